#include "agent.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "outcome.hpp"

namespace mailsuspend::cli {
namespace {

volatile sig_atomic_t stop_flag = 0;
void request_stop(int) { stop_flag = 1; }

}  // namespace

std::optional<Config> load_agent_config(const std::string& path, bool (*has_group)(const Config&),
                                        const std::string& missing, int& code) {
    std::string error;
    auto cfg = load_config(path, error);
    if (cfg && has_group(*cfg)) return cfg;
    if (cfg) error = path + " " + missing;
    std::cerr << "mailsuspend: " << error << "\n";
    code = static_cast<int>(Exit::bad_input);
    return std::nullopt;
}

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return stop_flag != 0; }

void sleep_unless_stopped(int64_t ms) {
    for (int64_t left = ms; left > 0 && !stop_flag; left -= 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(left, 50)));
}

void agent_log(const char* agent, const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& line : lines) text += std::string("mailsuspend ") + agent + ": " + line + "\n";
    std::cerr.flush();
    for (std::size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
        if (n > 0) done += static_cast<std::size_t>(n);
        else if (errno != EINTR) break;  // nowhere left to log to
    }
}

bool replace_file_durably(const std::string& dir, const std::string& name, const std::string& text,
                          std::string& error_r) {
    const std::string path = dir + "/" + name, tmp = path + ".new";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return error_r = tmp + ": " + std::strerror(errno), false;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fdatasync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
        return error_r = path + ": " + std::strerror(ok ? errno : err), false;
    // The rename itself must survive a power loss too.
    const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        ::fsync(d);
        ::close(d);
    }
    return true;
}

}  // namespace mailsuspend::cli
