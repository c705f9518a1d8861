// The suspension store: a fixed-layout hash table in a shared file mapping,
// durable through a write-ahead journal.  Layout and protocol: store_layout.hpp
// and docs/design.md, "The store".
//
//  - Readers (StoreReader) map the current generation read-only and look up
//    with a per-slot seqlock: no lock, no system call, no allocation.
//  - Writers (StoreWriter) are serialised by flock() on a lock file (released
//    by the kernel when the holder dies), journal every change with fdatasync
//    before applying it, and repair whatever a dead writer left on open.
//  - A full table or arena is grown by publishing a new generation (a new
//    file renamed over the old); readers notice the retired flag and remap.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"

namespace mailsuspend {

struct Config;

enum class LookupStatus {
    found,        // record read
    absent,       // no such target
    unavailable,  // store missing, corrupt, unknown layout, or a writer died mid-write
};

// What a host needs to decide, read without allocation.
struct HotView {
    uint8_t suspended = 0;      // bit per Service (stored flag, before expiry)
    DeliveryMode mode = DeliveryMode::unset;
    uint32_t min_expiry = 0;    // earliest expiry among suspended services; 0 = none
    uint32_t blob = 0;          // arena offset of the full record (for details)
};

struct StoreStats {
    uint64_t generation = 0;
    uint64_t seq = 0;          // last applied change sequence number
    uint64_t capacity = 0;     // targets this generation was sized for
    uint64_t slots = 0;
    uint64_t used_slots = 0;   // records (live and empty)
    uint64_t arena_bytes = 0;
    uint64_t arena_used = 0;
    uint64_t file_bytes = 0;
    uint64_t lifted_text_seq = 0;  // see layout::Header::lifted_text_seq
};

class StoreReader {
public:
    // Maps <dir>/store read-only.  nullptr and error_r on failure.  noexcept.
    static std::unique_ptr<StoreReader> open(const std::string& dir, std::string& error_r);
    ~StoreReader();
    StoreReader(const StoreReader&) = delete;
    StoreReader& operator=(const StoreReader&) = delete;

    // Hot path: key must be normalised.  Follows a newer generation by itself.
    LookupStatus lookup(std::string_view key, HotView& out) noexcept;
    // Two keys (a mailbox and its domain) under one look at the mapping:
    // the answers lookup() gives one by one.
    void lookup_pair(std::string_view first, std::string_view second, HotView& first_out, HotView& second_out,
                     LookupStatus& first_r, LookupStatus& second_r) noexcept;
    // Full record (allocates).  found/absent/unavailable as above.
    // only_service >= 0: that service's state only (decode_record).
    LookupStatus read(std::string_view key, TargetRecord& out, int only_service = -1) noexcept;
    // Every stored record (allocates); false when unavailable.
    bool for_each(const std::function<void(const TargetRecord&)>& fn) noexcept;
    // The records whose blob starts at arena offset from_offset or later,
    // with where each blob starts and ends; follows a newer generation
    // first.  A writer appends blobs in the order of its changes (a growth
    // copies the old ones in any order), so a publisher decodes only what is
    // new (cli/fleet_state.hpp).
    bool for_each_from(uint64_t from_offset,
                       const std::function<void(const TargetRecord&, uint64_t start, uint64_t end)>& fn) noexcept;
    StoreStats stats() const noexcept;
    const std::string& last_error() const noexcept;
    // True when <dir>/store is now another file than the one mapped (deleted
    // and initialised again, a restored backup) or was truncated or grown in
    // place (size differs from the mapping): no generation flag tells
    // that, so a long-lived caller asks now and then and opens afresh.
    // One stat(); true also when the path is gone or cannot be reached.
    bool replaced() const noexcept;
    // A number that changes with every applied change (any writer) and
    // with every new generation; 0 when nothing is mapped.  One guarded
    // read of the shared header, no system call: lets a long-lived reader
    // skip its lookups while nothing changed.  It does not see a file
    // replaced or overwritten in place (replaced(), usable() do).
    uint64_t change_stamp() noexcept;
    // The mapping is current and its header intact (remapping a newer
    // generation if need be): false means the whole store is unavailable,
    // not just one record.
    bool usable() noexcept;

    struct Impl;
private:
    explicit StoreReader(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// <dir>/changed, the store's notify file.  Every writer writes its change
// sequence into it (a pwrite, so inotify reports IN_MODIFY) after each
// change that puts imap, pop3, webmail or sieve in force for a target (and
// after a rebuild or a repair), so a long-lived reader (a Dovecot mail
// process) waits for those with inotify instead of polling.  A store write through the
// mapping is invisible to inotify, hence this file.  Mode 0664, group
// store.write_group, like the store file: writers write it, read-group
// members (who alone may enter the directory) read and watch it.  Nothing
// is ever read from it; its content (the sequence, 20 digits) is for people.
std::string notify_file_path(const std::string& dir);
// Whether readers can wait on the notify file; false with why not (missing,
// not a regular file, not readable by the read group) in error_r: for
// `mailsuspend check`.
bool notify_file_usable(const std::string& dir, std::string& error_r);

// One change: the complete new image of a target (an empty record erases it).
struct Change {
    TargetRecord record;
};

// How long StoreWriter::open waits for the writer lock.  The lock is polled
// (flock LOCK_NB, short sleeps), never waited on without a bound.
struct LockWait {
    // -1: cfg.admin_lock_timeout (an admin command); a mail server's process
    // passes cfg.host_lock_wait_ms.
    int64_t timeout_ms = -1;
    // Called once when the lock is still taken after about a second, with
    // who holds it ("pid 1234", or "another process"): the CLI says so.
    std::function<void(const std::string& holder)> waiting;
    // Out: the lock stayed taken until the deadline (open returned nullptr).
    bool busy = false;
};

class StoreWriter {
public:
    // Opens (creating with init=true) the store under cfg.store_path, takes the
    // writer lock (waiting as wait says; no wait given: the admin timeout), and
    // repairs/replays after a dead writer.  convert_older: a store in an
    // older layout (layout::kOldestConvertibleLayoutVersion and later) is
    // converted to this one (`mailsuspend rebuild`); without it such a store
    // is refused.
    static std::unique_ptr<StoreWriter> open(const Config& cfg, bool init, std::string& error_r,
                                             LockWait* wait = nullptr, bool convert_older = false);
    ~StoreWriter();  // releases the lock
    StoreWriter(const StoreWriter&) = delete;
    StoreWriter& operator=(const StoreWriter&) = delete;

    // Current image of key (absent: a fresh record with that key); false on I/O error.
    bool get(std::string_view key, TargetRecord& out, bool* exists = nullptr);
    // Journals all changes (one fdatasync) then applies them; returns the last
    // sequence number, 0 and error_r on failure (nothing applied).  Durable on return.
    // before_journal (when given) runs once every check has passed and the
    // changes have their sequence numbers (the last is passed), before the
    // journal is written: the audit log is written there, and a false from it
    // (its error in error_r) stops the commit with nothing changed.  When the
    // journal write then fails, undo runs.  So a change is stored only with
    // its audit line, and an audit line stays only for a stored change.
    using BeforeJournal = std::function<bool(uint64_t last_seq, std::string& error_r)>;
    uint64_t commit(std::vector<Change>& changes, std::string& error_r,
                    const BeforeJournal& before_journal = {}, const std::function<void()>& undo = {});
    bool for_each(const std::function<void(const TargetRecord&)>& fn);
    // Rewrites into a new generation sized for capacity (0 = current), dropping
    // empty records; readers follow.  false and error_r on failure.
    bool rebuild(uint64_t capacity, std::string& error_r);
    // When a change since the store was last written afresh left a reason
    // that is no longer in force in the arena (superseded record images stay
    // there until a rebuild, and the read group can read the file), rewrites
    // the store into a new generation, without waking live sessions.  true
    // when nothing was pending or the rewrite succeeded.
    bool drop_lifted_text(std::string& error_r);
    // Verifies every slot and record; appends problems to report.
    bool check(std::vector<std::string>& report);
    // Sets the readers' derived data (tags, domain filter: store_layout.hpp)
    // from the slots wherever it disagrees, so nothing damaged there hides a
    // record from readers for longer than until the next sweep; returns how
    // many slots were wrong (0 in a healthy store).
    uint64_t repair_derived() noexcept;
    StoreStats stats() const;
    // Empty, or why the last change could not be announced in the notify
    // file (see notify_file_path): the change stands, but live sessions
    // learn of it only at their next timed re-check.
    const std::string& notify_warning() const;

    struct Impl;
private:
    explicit StoreWriter(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace mailsuspend
