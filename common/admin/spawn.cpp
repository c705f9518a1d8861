#include "spawn.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

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

// Starts args[0] with stdin from in, stdout to /dev/null (the CLI's output
// stays its own), stderr to err.  Returns the pid, or -1 with error.
pid_t start(std::vector<std::string>& args, int in, int err, std::string& error_r) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
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
    std::vector<std::string> args;
    std::istringstream words(templ);
    for (std::string w; words >> w;) {
        for (const auto& [placeholder, value] : fills) fill(w, placeholder, value);
        args.push_back(w);
    }
    return args;
}

bool run_program(std::vector<std::string> args, std::string& error_r, std::string_view input) {
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
    const pid_t pid = start(args, in, err, error_r);
    ::close(in);
    bool ok = pid > 0;
    int status = 0;
    while (ok && ::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            error_r = "cannot wait for " + args[0];
            ok = false;
        }
    if (ok) ok = exited_ok(args[0], status, err, error_r);
    ::close(err);
    return ok;
}

}  // namespace mailsuspend
