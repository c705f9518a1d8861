// The outbox: changes a mail server's process decided but could not make
// because the store's writer lock stayed taken past store.host_lock_wait_ms
// (issue 12 item 1, issue 13 item 3).  One file per pending change in
// <store.path>/outbox/, written with O_EXCL and published by link/rename;
// applied by the next writer (any CLI command, the sweep timer, or a later
// Exim process that gets the lock) through the same Session/commit path as
// every change (journal and audit line), then removed.  Never dropped,
// never waited for.
//
// Not synced in the host process: a crash of the machine in the second
// before the kernel writes it back loses the pending change together with
// the rate counters that decided it (also unsynced); the message itself was
// refused either way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "counters.hpp"

namespace mailsuspend {

struct Config;
class StoreWriter;

enum class OutboxOp { rate_suspend, extend };

struct OutboxEntry {
    OutboxOp op = OutboxOp::rate_suspend;
    std::string key;   // normalised mailbox
    std::string why;   // rate_suspend: what crossed, e.g. "6 messages within 24h (...)"
    int64_t time = 0;  // when it was decided: the suspension counts from then
    // rate_suspend: the services to suspend (send; with the login services
    // for limits.login_ips_action = "logins", decided by Dovecot's auth process).
    uint8_t services = 1u << 3;  // kSendMask
};

std::string outbox_dir(const Config& cfg);

constexpr const char* kSuspendPrefix = "suspend.";
constexpr const char* kExtendPrefix = "extend.";
// <store>/outbox/<prefix><16 hex digits of the key's hash> into buf; false
// when it does not fit.  No allocation (the host's send check calls it).
bool outbox_entry_path(const std::string& store, const char* prefix, std::string_view key, char* buf,
                       std::size_t size) noexcept;

// Creates <store.path>/outbox (by init): 02770 root:write_group, so Exim
// may hand changes on and nobody else reads or forges them.  false with the
// error in error_r.
bool create_outbox(const Config& cfg, std::string& error_r);

// Hands a change on; false with what went wrong in error_r.  A rate
// suspension of a key already pending is kept (the first crossing's reason
// stands); a later extension replaces an earlier one.
// A rate suspension is counted into counters (Counters::note_outbox_suspensions)
// before it is linked in; nullptr: not counted (then no counters file is in
// use, and send checks look into the outbox every time).
bool outbox_put(const Config& cfg, const OutboxEntry& entry, std::string& error_r, Counters* counters);

// True when a rate suspension of key waits in the outbox: the host that
// decided it enforces it at once (one stat(), no allocation).
bool outbox_holds_suspension(const Config& cfg, std::string_view key) noexcept;

// Applies up to max pending changes with writer (its lock is held), oldest
// first, each through suspend_automatically / extend_rate_suspension;
// removes each once committed.  An entry that cannot be parsed is renamed
// bad.<name> and reported; an entry whose commit fails stays for the next
// writer.  Returns the number applied; problems go to warnings, what was
// done to done (one line per entry).
// Each rate suspension removed is counted out of counters, whose count is
// then raised to the suspensions left behind (a count lost with a replaced
// counters file comes back here); nullptr: no counting.
int outbox_apply(const Config& cfg, StoreWriter& writer, std::vector<std::string>& warnings, Counters* counters,
                 std::vector<std::string>* done = nullptr, std::size_t max = SIZE_MAX);
// The same for a writer with no counters at hand (the CLI): <store>/counters
// is opened for the counting, if it is there.
int outbox_apply(const Config& cfg, StoreWriter& writer, std::vector<std::string>& warnings,
                 std::vector<std::string>* done = nullptr, std::size_t max = SIZE_MAX);

}  // namespace mailsuspend
