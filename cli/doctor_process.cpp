#include "doctor_process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace mailsuspend::cli {
namespace {

struct Pipe {
    int fd[2] = {-1, -1};
    bool open() { return ::pipe2(fd, O_CLOEXEC) == 0; }
    void close_end(int i) {
        if (fd[i] >= 0) ::close(fd[i]);
        fd[i] = -1;
    }
    ~Pipe() {
        close_end(0);
        close_end(1);
    }
};

int wait_status(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

// Feeds input to fds[0] (may be -1) and drains fds[1], fds[2] into out, err
// until both reach end of file; false when the deadline passes first.
bool pump(int in_fd, int out_fd, int err_fd, const std::string& input, std::string& out, std::string& err,
          Clock::time_point deadline) {
    std::size_t written = 0;
    if (input.empty() && in_fd >= 0) ::close(in_fd), in_fd = -1;
    while (out_fd >= 0 || err_fd >= 0) {
        pollfd p[3] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
        const int n = ::poll(p, 3, ms_left(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (in_fd >= 0) ::close(in_fd);
            return false;
        }
        int* fds[2] = {&out_fd, &err_fd};
        std::string* sinks[2] = {&out, &err};
        for (int i = 0; i < 2; ++i) {
            if (*fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[8192];
            const ssize_t got = ::read(*fds[i], buf, sizeof buf);
            if (got > 0) sinks[i]->append(buf, static_cast<std::size_t>(got));
            else if (got == 0 || errno != EINTR) *fds[i] = -1;  // the Pipe closes it
        }
        if (in_fd >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            const ssize_t put = ::write(in_fd, input.data() + written, input.size() - written);
            if (put > 0) written += static_cast<std::size_t>(put);
            if (put < 0 && errno != EINTR) written = input.size();  // the child stopped reading
            if (written == input.size()) ::close(in_fd), in_fd = -1;
        }
    }
    if (in_fd >= 0) ::close(in_fd);
    return true;
}

}  // namespace

std::string RunResult::what() const {
    if (!error.empty()) return error;
    std::string text = "exit status " + std::to_string(status);
    std::string detail = err.empty() ? out : err;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
    for (char& c : detail)
        if (c == '\n') c = ' ';
    if (detail.size() > 600) detail = detail.substr(0, 600) + "...";
    return detail.empty() ? text : text + ": " + detail;
}

RunResult run_program(const std::vector<std::string>& argv, const std::string& input, int timeout_s) {
    RunResult r;
    Pipe in, out, err;
    if (!in.open() || !out.open() || !err.open()) return r.error = std::strerror(errno), r;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in.fd[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out.fd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err.fd[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return r.error = "cannot run " + argv[0] + ": " + std::strerror(rc), r;
    in.close_end(0);
    out.close_end(1);
    err.close_end(1);
    const int in_fd = in.fd[1];
    in.fd[1] = -1;  // pump closes it
    const bool done = pump(in_fd, out.fd[0], err.fd[0], input, r.out, r.err,
                           Clock::now() + std::chrono::seconds(timeout_s));
    if (!done) ::kill(pid, SIGKILL);
    r.status = wait_status(pid);
    if (!done) r.error = argv[0] + " did not finish within " + std::to_string(timeout_s) + " s (killed)";
    return r;
}

std::string group_name(gid_t gid) {
    const group* g = ::getgrgid(gid);
    return g ? g->gr_name : std::to_string(gid);
}

std::string Identity::describe() const {
    std::string text = "user " + user + ", group " + group_name(gid);
    if (groups.empty()) return text + ", no supplementary groups";
    text += ", supplementary groups ";
    for (std::size_t i = 0; i < groups.size(); ++i) text += (i ? "," : "") + group_name(groups[i]);
    return text;
}

bool run_as(const Identity& id, const std::function<bool(std::string& error_r)>& body, std::string& error_r) {
    Pipe result;
    if (!result.open()) return error_r = std::string("pipe: ") + std::strerror(errno), false;
    const pid_t pid = ::fork();
    if (pid < 0) return error_r = std::string("fork: ") + std::strerror(errno), false;
    if (pid == 0) {
        result.close_end(0);
        std::string answer;
        if (::setgroups(id.groups.size(), id.groups.data()) != 0 || ::setgid(id.gid) != 0 ||
            ::setuid(id.uid) != 0)
            answer = std::string("cannot become ") + id.describe() + ": " + std::strerror(errno);
        else if (body(answer))
            answer = "\x01";  // success marker: an empty read means the child died
        else if (answer.empty())
            answer = "failed";
        (void)!::write(result.fd[1], answer.data(), answer.size());
        ::_exit(0);
    }
    result.close_end(1);
    std::string out, err;
    const bool done = pump(-1, result.fd[0], -1, {}, out, err, Clock::now() + std::chrono::seconds(20));
    if (!done) ::kill(pid, SIGKILL);
    const int status = wait_status(pid);
    if (!done) return error_r = "the check as " + id.user + " did not finish within 20 s", false;
    if (out == "\x01") return true;
    if (out.empty())
        return error_r = "the check as " + id.user + " died (status " + std::to_string(status) + ")", false;
    return error_r = out, false;
}

}  // namespace mailsuspend::cli
