// The audit log: one JSON object per line, appended with O_APPEND so
// concurrent writers (CLI, Exim's automatic suspensions) never interleave
// within a line, and synced before the command says "ok".
//
// Never a partial line: the lines of one change go out in one write(), and
// when that write is short (a full disk) or the sync fails, the file is cut
// back to its size before.  Every writer of the log holds the store's writer
// lock, so nobody appended in between.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>

#include "operations.hpp"

namespace mailsuspend {

bool append_audit(const std::string& path, const std::vector<nlohmann::json>& lines, std::string& error_r,
                  int64_t* size_before) {
    if (size_before) *size_before = -1;
    if (path.empty() || lines.empty()) return true;
    std::string text;
    for (const auto& line : lines) text += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return error_r = path + ": " + std::strerror(errno), false;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        return error_r = path + ": " + std::strerror(err), false;
    }
    bool ok = false;
    ssize_t n;
    do n = ::write(fd, text.data(), text.size());
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        error_r = path + ": " + std::strerror(errno);
    } else if (static_cast<std::size_t>(n) != text.size()) {
        // A short write sets no errno; on a regular file it means no room.
        error_r = path + ": short write (" + std::to_string(n) + " of " + std::to_string(text.size()) +
                  " bytes): " + std::strerror(ENOSPC);
    } else if (::fdatasync(fd) != 0) {
        error_r = path + ": cannot sync: " + std::strerror(errno);
    } else {
        ok = true;
    }
    if (!ok) {
        if (::ftruncate(fd, st.st_size) != 0)
            error_r += " (and cutting it back failed: " + std::string(std::strerror(errno)) + ")";
    } else if (size_before) {
        *size_before = st.st_size;
    }
    ::close(fd);
    return ok;
}

void undo_audit(const std::string& path, int64_t size_before) {
    if (path.empty() || size_before < 0) return;
    if (::truncate(path.c_str(), size_before) != 0) {}  // best effort: the caller reports the failure
}

}  // namespace mailsuspend
