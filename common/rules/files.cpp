#include "files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace mailsuspend {
namespace {

bool read_exactly(int fd, char* buf, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::read(fd, buf, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;  // shorter than fstat said: changed while read
            return false;
        }
        buf += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

bool read_small_file(const std::string& path, FileBytes& out, const ReadOptions& options) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (options.follow_links ? 0 : O_NOFOLLOW));
    if (fd < 0) return false;
    struct stat st {};
    bool ok = ::fstat(fd, &st) == 0;
    if (ok && !S_ISREG(st.st_mode)) ok = (errno = EINVAL, false);
    if (ok && static_cast<std::size_t>(st.st_size) > options.limit) ok = (errno = EFBIG, false);
    if (ok) {
        out.size = static_cast<std::size_t>(st.st_size);
        out.data.reset(new char[out.size]);
        ok = read_exactly(fd, out.data.get(), out.size);
        if (options.stat_r) *options.stat_r = st;
    }
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
}

bool read_small_file(const std::string& path, std::string& out, const ReadOptions& options) {
    FileBytes bytes;
    if (!read_small_file(path, bytes, options)) return false;
    out.assign(bytes.data.get(), bytes.size);
    return true;
}

namespace {

// Writes all of text to fd and closes it; false with errno set.
bool write_all_and_close(int fd, std::string_view text) {
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    const int saved = errno;
    const bool closed = ::close(fd) == 0;
    if (done < text.size()) errno = saved;
    return done == text.size() && closed;
}

}  // namespace

bool write_small_file(const std::string& path, std::string_view text, mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    return fd >= 0 && write_all_and_close(fd, text);
}

bool replace_small_file(const std::string& path, std::string_view text, mode_t mode, gid_t group) {
    const std::size_t slash = path.rfind('/');
    std::string tmp = slash == std::string::npos ? "." + path : path.substr(0, slash + 1) + "." + path.substr(slash + 1);
    tmp += ".XXXXXX";
    const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0) return false;
    if ((group != static_cast<gid_t>(-1) && ::fchown(fd, static_cast<uid_t>(-1), group) != 0) ||
        ::fchmod(fd, mode) != 0) {
        const int chmod_errno = errno;
        ::close(fd);
        errno = chmod_errno;
    } else if (write_all_and_close(fd, text) && ::rename(tmp.c_str(), path.c_str()) == 0) {
        return true;
    }
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    return false;
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const std::size_t eol = text.find('\n');
        lines.push_back(text.substr(0, eol));
        if (eol == std::string_view::npos) break;
        text.remove_prefix(eol + 1);
    }
    return lines;
}

std::vector<std::string> blank_separated_words(std::string_view text) {
    std::vector<std::string> words;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && is_blank(text[i])) ++i;
        const std::size_t start = i;
        while (i < text.size() && !is_blank(text[i])) ++i;
        if (i > start) words.emplace_back(text.substr(start, i - start));
    }
    return words;
}

}  // namespace mailsuspend
