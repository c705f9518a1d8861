// Shared by the libFuzzer targets: a private scratch directory on tmpfs and
// whole-file writes.  A harness aborts (a crash libFuzzer reports) only when a
// contract of the code under test is broken, never for input it rightly refuses.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace fuzz {

// /dev/shm/mailsuspend-fuzz-<name>-<pid>: tmpfs keeps fdatasync/msync cheap.
// Removed at exit; a crashed run leaves it for inspection.
inline const std::string& scratch_dir(const char* name) {
    static const std::string dir = [name] {
        std::string d = std::string("/dev/shm/mailsuspend-fuzz-") + name + "-" + std::to_string(::getpid());
        ::mkdir(d.c_str(), 0700);
        static std::string keep = d;
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(keep, ec);
        });
        return d;
    }();
    return dir;
}

inline void write_file(const std::string& path, const void* data, std::size_t size) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) std::abort();
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n <= 0) std::abort();
        p += n;
        size -= static_cast<std::size_t>(n);
    }
    ::close(fd);
}

// A broken contract: print what and crash so libFuzzer saves the input.
[[noreturn]] inline void violated(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "CONTRACT VIOLATED: %s: %.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

// Text handed to a host or a log: no control characters (CR/LF above all).
inline bool printable_line(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7F) return false;
    return true;
}

}  // namespace fuzz
