#include "audit_follow.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "agent.hpp"

namespace mailsuspend::cli {
namespace {

constexpr const char* kPositionFile = "notify-position";
constexpr std::size_t kChunk = 64 * 1024;

uint64_t inode_of(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

}  // namespace

bool load_notify_position(const std::string& dir, NotifyPosition& p, std::string& error_r) {
    p = NotifyPosition{};
    const std::string path = dir + "/" + kPositionFile;
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT) return true;  // a new agent
        return error_r = path + ": " + std::strerror(errno), false;
    }
    unsigned long long inode = 0, offset = 0;
    if (!(in >> inode >> offset))
        return error_r = path + ": damaged (delete it to send the current audit log from its start)", false;
    p.inode = inode;
    p.offset = offset;
    return true;
}

bool save_notify_position(const std::string& dir, const NotifyPosition& p, std::string& error_r) {
    return replace_file_durably(dir, kPositionFile, std::to_string(p.inode) + " " + std::to_string(p.offset) + "\n",
                                error_r);
}

AuditFollower::AuditFollower(std::string log_path, NotifyPosition start)
    : path_(std::move(log_path)), start_(start) {}

AuditFollower::~AuditFollower() {
    if (fd_ >= 0) ::close(fd_);
}

// Opens the file of the saved position: the log itself, or its rotated
// predecessor <log>.1; else the log from its start (with a note).
bool AuditFollower::open_start(std::string& note_r) {
    const uint64_t current = inode_of(path_);
    if (current == 0) return false;  // not there yet: the first change creates it
    std::string file = path_;
    uint64_t offset = 0;
    if (start_.inode == current) {
        offset = start_.offset;
    } else if (start_.inode != 0 && inode_of(path_ + ".1") == start_.inode) {
        file = path_ + ".1";
        offset = start_.offset;
        note_r = "the audit log was rotated while stopped: finishing " + file + " first";
    } else if (start_.inode != 0) {
        note_r = "the audit log of the saved position is gone (rotated and compressed?): lines after offset " +
                 std::to_string(start_.offset) + " of it were not sent; going on with " + path_ + " from its start";
    }
    fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return false;
    struct stat st {};
    ::fstat(fd_, &st);
    inode_ = st.st_ino;
    offset_ = offset;
    started_ = true;
    return true;
}

// Appends what the file holds past buf_; false at its end.
bool AuditFollower::read_more() {
    std::string chunk(kChunk, '\0');
    const ssize_t n = ::pread(fd_, chunk.data(), chunk.size(), static_cast<off_t>(offset_ + buf_.size()));
    if (n <= 0) return false;
    buf_.append(chunk.data(), static_cast<std::size_t>(n));
    return true;
}

// The log's name points at another file: ours was renamed away.
bool AuditFollower::rotated() const {
    const uint64_t current = inode_of(path_);
    return current != 0 && current != inode_;
}

void AuditFollower::open_current(std::string& note_r) {
    if (!buf_.empty())
        note_r = "the rotated audit log ended in a partial line (" + std::to_string(buf_.size()) + " bytes), skipped";
    ::close(fd_);
    fd_ = -1;
    buf_.clear();
    start_ = NotifyPosition{inode_of(path_), 0};
    started_ = false;
    std::string why;
    open_start(why);
}

bool AuditFollower::line_still_there() const {
    struct stat st {};
    return fd_ >= 0 && ::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) >= offset_;
}

bool AuditFollower::next(std::string& line, std::string& note_r) {
    note_r.clear();
    if (!started_ && !open_start(note_r)) return false;
    for (;;) {
        const std::size_t nl = buf_.find('\n');
        if (nl != std::string::npos) {
            line.assign(buf_, 0, nl);
            buf_.erase(0, nl + 1);
            offset_ += nl + 1;
            return true;
        }
        if (read_more()) continue;
        struct stat st {};
        if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset_ + buf_.size()) {
            // Cut back: a change whose journal write failed takes its lines
            // back (audit.cpp), or someone truncated the log.
            note_r = "the audit log was cut back to " + std::to_string(st.st_size) + " bytes (from " +
                     std::to_string(offset_ + buf_.size()) + ")";
            offset_ = std::min<uint64_t>(offset_, static_cast<uint64_t>(st.st_size));
            buf_.clear();
            return false;
        }
        if (!rotated()) return false;
        // A writer that opened the old file just before the rename may have
        // appended since our last read: read it to its end once more.
        if (read_more()) continue;
        open_current(note_r);
        if (!started_) return false;
        note_r += (note_r.empty() ? "" : "; ") + std::string("the audit log was rotated: following the new ") + path_;
    }
}

}  // namespace mailsuspend::cli
