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

int anonymous_file(std::string& error) {
    int fd = ::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    char templ[] = "/tmp/mailsuspend-XXXXXX";
    fd = ::mkostemp(templ, O_CLOEXEC);
    if (fd < 0) return error = errno_text("temporary file"), -1;
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
pid_t start(std::vector<std::string>& args, int in, int err, std::string& error) {
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
    if (rc != 0) return error = "cannot run " + args[0] + ": " + std::strerror(rc), -1;
    return pid;
}

// How the program ended, with the start of its stderr (in err).
std::string ending(const std::string& program, int status, int err) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    std::string output(300, '\0');
    const ssize_t n = ::pread(err, output.data(), output.size(), 0);
    output.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    std::string what = program + " exited with status " +
                       std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (!output.empty()) what += ": " + sanitise_line(output, 200);
    return what;
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

std::string run_program(std::vector<std::string> args, std::string_view input) {
    if (args.empty()) return "no program to run";
    if (args[0].front() != '/') return args[0] + ": not an absolute path";
    std::string error;
    const int in = anonymous_file(error);
    if (in < 0) return error;
    const int err = anonymous_file(error);
    if (err < 0) return ::close(in), error;
    if (::write(in, input.data(), input.size()) != static_cast<ssize_t>(input.size()) || ::lseek(in, 0, SEEK_SET) != 0) {
        ::close(in), ::close(err);
        return errno_text("temporary file");
    }
    const pid_t pid = start(args, in, err, error);
    ::close(in);
    int status = 0;
    while (pid > 0 && ::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            error = "cannot wait for " + args[0];
            break;
        }
    if (error.empty()) error = ending(args[0], status, err);
    ::close(err);
    return error;
}

}  // namespace mailsuspend
