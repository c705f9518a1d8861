#include "lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

namespace mailsuspend::store_file {

int64_t monotonic_ms() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

std::string lock_holder(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return "another process";
    char want[64];
    std::snprintf(want, sizeof want, "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev),
                  static_cast<unsigned long>(st.st_ino));
    const int p = ::open("/proc/locks", O_RDONLY | O_CLOEXEC);
    if (p < 0) return "another process";
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(p, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(p);
    for (std::size_t at = 0, eol; at < text.size(); at = eol + 1) {
        eol = text.find('\n', at);
        if (eol == std::string::npos) eol = text.size();
        const std::string line = text.substr(at, eol - at);
        if (line.find("FLOCK") == std::string::npos || line.find("->") != std::string::npos) continue;
        const std::size_t dev = line.find(std::string(" ") + want + " ");
        if (dev == std::string::npos) continue;
        const std::size_t pid_start = line.rfind(' ', dev - 1);  // the pid ends where the device begins
        if (pid_start == std::string::npos) continue;
        return "pid " + line.substr(pid_start + 1, dev - pid_start - 1);
    }
    return "another process";
}

}  // namespace mailsuspend::store_file
