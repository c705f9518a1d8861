#include "spawn.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "files.hpp"
#include "text.hpp"

extern char** environ;

namespace mailsuspend {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

int anonymous_file(std::string& error_r) {
    int fd = ::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    char templ[] = "/tmp/mailsuspend-XXXXXX";
    fd = ::mkostemp(templ, O_CLOEXEC);
    if (fd < 0) return error_r = errno_text("temporary file"), -1;
    ::unlink(templ);
    return fd;
}

// Replaces every placeholder in w, searching on after each inserted value
// (a value may itself hold a placeholder).
void fill(std::string& w, std::string_view placeholder, const std::string& value) {
    for (auto at = w.find(placeholder); at != std::string::npos; at = w.find(placeholder, at + value.size()))
        w.replace(at, placeholder.size(), value);
}

// Starts args[0] with stdin from in, stdout to out (-1: /dev/null, so the
// CLI's output stays its own), stderr to err.  Returns the pid, or -1 with error.
pid_t start(std::vector<std::string>& args, int in, int out, int err, std::string& error_r) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    if (out >= 0) posix_spawn_file_actions_adddup2(&actions, out, 1);
    else posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, err, 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return error_r = "cannot run " + args[0] + ": " + std::strerror(rc), -1;
    return pid;
}

// Whether the program exited 0; else how it ended, with the start of its
// stderr (in err), in error_r.
bool exited_ok(const std::string& program, int status, int err, std::string& error_r) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    std::string output(300, '\0');
    const ssize_t n = ::pread(err, output.data(), output.size(), 0);
    output.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    std::string what = program + " exited with status " +
                       std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (!output.empty()) what += ": " + sanitise_line(output, 200);
    error_r = std::move(what);
    return false;
}

}  // namespace

std::vector<std::string> command_words(const std::string& templ,
                                       const std::vector<std::pair<std::string_view, std::string>>& fills) {
    std::vector<std::string> args = blank_separated_words(templ);
    for (std::string& w : args)
        for (const auto& [placeholder, value] : fills) fill(w, placeholder, value);
    return args;
}

namespace {

// The start of what the program wrote into out.
std::string written(int out, std::size_t limit) {
    std::string text(limit, '\0');
    const ssize_t n = ::pread(out, text.data(), text.size(), 0);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return text;
}

}  // namespace

bool run_program(std::vector<std::string> args, std::string& error_r, std::string_view input,
                 std::string* output_r) {
    if (args.empty()) return error_r = "no program to run", false;
    if (args[0].front() != '/') return error_r = args[0] + ": not an absolute path", false;
    const int in = anonymous_file(error_r);
    if (in < 0) return false;
    const int err = anonymous_file(error_r);
    if (err < 0) return ::close(in), false;
    if (::write(in, input.data(), input.size()) != static_cast<ssize_t>(input.size()) || ::lseek(in, 0, SEEK_SET) != 0) {
        ::close(in), ::close(err);
        return error_r = errno_text("temporary file"), false;
    }
    const int out = output_r ? anonymous_file(error_r) : -1;
    if (output_r && out < 0) return ::close(in), ::close(err), false;
    const pid_t pid = start(args, in, out, err, error_r);
    ::close(in);
    bool ok = pid > 0;
    int status = 0;
    while (ok && ::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            error_r = "cannot wait for " + args[0];
            ok = false;
        }
    if (ok) ok = exited_ok(args[0], status, err, error_r);
    if (ok && output_r) *output_r = written(out, 64 * 1024);
    if (out >= 0) ::close(out);
    ::close(err);
    return ok;
}

namespace {

// The detached process lets go of the host's connections: its standard
// streams (a local submission's pipes) and every socket and pipe (the SMTP
// client's connection) but keep_fd.  Else a client would wait for an end of
// file until it finished.  Files (the host's log, the store) stay open.
void let_go_of_host_io(int keep_fd) noexcept {
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd <= 2 && null >= 0; ++fd) ::dup2(null, fd);
    if (null > 2) ::close(null);
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return;
    const int own = ::dirfd(dir);
    while (const dirent* e = ::readdir(dir)) {
        const int fd = std::atoi(e->d_name);
        struct stat st;
        if (fd <= 2 || fd == keep_fd || fd == own || ::fstat(fd, &st) != 0) continue;
        if (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode)) ::close(fd);
    }
    ::closedir(dir);
}

// The detached process: runs work, says so on done_fd, leaves.
[[noreturn]] void run_and_leave(const std::function<void()>& work, int done_fd) noexcept {
    let_go_of_host_io(done_fd);
    try {
        work();
    } catch (...) {
    }
    const char done = 1;
    (void)!::write(done_fd, &done, 1);
    ::_exit(0);
}

// What the detached process said on fd within wait_ms (a signal does not
// cut the wait short): finished (its byte), not_started (end of file: it
// never ran, or died first), or running (nothing yet).
Detached outcome_within(int fd, int64_t wait_ms) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::milliseconds(wait_ms);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        pollfd p{fd, POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left)));
        if (n > 0) {
            char byte = 0;
            return ::read(fd, &byte, 1) == 1 ? Detached::finished : Detached::not_started;
        }
        if (n == 0 || errno != EINTR) return Detached::running;
    }
}

}  // namespace

Detached run_detached(int64_t wait_ms, const std::function<void()>& work) noexcept {
    int done[2];
    if (::pipe2(done, O_CLOEXEC) != 0) return Detached::not_started;
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(done[0]);
        if (::fork() == 0) run_and_leave(work, done[1]);
        ::_exit(0);  // the grandchild, if it started, is init's to reap
    }
    ::close(done[1]);
    int status = 0;
    while (child > 0 && ::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    // The write end is closed in this process and in the child: only the
    // grandchild holds it, so an end of file means it never ran.
    const Detached result = child > 0 ? outcome_within(done[0], wait_ms) : Detached::not_started;
    ::close(done[0]);
    return result;
}

}  // namespace mailsuspend
