// Following the audit log for `mailsuspend notify` (issue 16, item 4): line
// by line, from a durable position, across rotations.
//
// The position is the log file's inode and the offset after the last line
// delivered, kept in <store.path>/notify-position (durable_file.hpp) after
// each acknowledged line: a restart goes on from there, and at worst sends
// the line that was in flight once more (at least once).
//
// Rotation (debian/mailsuspend.logrotate: rename, then a new file): when the
// log's name points at another inode, the old file is read to its end, then
// the new one from offset 0.  A position whose inode is no longer the log's
// is looked for in <log>.1 (delaycompress keeps it uncompressed) first.
#pragma once

#include <cstdint>
#include <string>

namespace mailsuspend::cli {

struct NotifyPosition {
    uint64_t inode = 0;   // 0: none yet (a new agent starts at the log's first line)
    uint64_t offset = 0;  // after the last line delivered
    bool operator==(const NotifyPosition& o) const { return inode == o.inode && offset == o.offset; }
};

// "<inode> <offset>\n" in dir/notify-position; a missing file is the start {0, 0}.
bool load_notify_position(const std::string& dir, NotifyPosition& p, std::string& error_r);
bool save_notify_position(const std::string& dir, const NotifyPosition& p, std::string& error_r);

class AuditFollower {
public:
    AuditFollower(std::string log_path, NotifyPosition start);
    ~AuditFollower();
    AuditFollower(const AuditFollower&) = delete;
    AuditFollower& operator=(const AuditFollower&) = delete;

    // The next complete line, without its '\n'; false when there is none yet.
    // note_r (either way) says what happened that the admin should know
    // (a rotation, a log cut back, a lost rotated file); empty otherwise.
    bool next(std::string& line, std::string& note_r);
    // Where the line next() returned last ends: the position to save once
    // it was delivered.
    NotifyPosition position() const { return {inode_, offset_}; }
    // Whether the file still reaches the end of that line: a change whose
    // journal write failed cuts its lines back off the log (audit.cpp).
    bool line_still_there() const;

private:
    bool open_start(std::string& note_r);
    bool read_more();
    bool rotated() const;
    void open_current(std::string& note_r);

    std::string path_;
    NotifyPosition start_;
    bool started_ = false;
    int fd_ = -1;
    uint64_t inode_ = 0;
    uint64_t offset_ = 0;  // file offset of buf_'s first byte
    std::string buf_;      // read from the file, not yet returned
};

}  // namespace mailsuspend::cli
