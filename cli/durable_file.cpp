#include "durable_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mailsuspend::cli {

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
