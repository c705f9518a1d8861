// What an admin or a panel can do to the store, with every policy rule:
// locks, self-service unblock limits, expiry sweeps, deletion guard.
// Changes gather in a Session and commit together: one journal write, then
// one audit line per changed target, then the host commands (flush queue,
// fail queued mail).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "model.hpp"
#include "outcome.hpp"

namespace mailsuspend {

class StoreWriter;
class StoreReader;

struct Actor {
    uint32_t uid = 0;
    std::string name;   // login name of uid, or --actor from a panel
    bool is_root() const { return uid == 0; }
};

struct SuspendArgs {
    std::string target;
    uint8_t services = 0;
    std::string reason;
    int64_t duration = 0;  // 0 = no expiry
    bool lock = false;
    std::optional<DeliveryMode> mode;
    bool fail_queued = false;
    bool hold = false;  // send: accept and hold its mail in the queue instead of refusing it
    Source source = Source::admin;
};

struct UnsuspendArgs {
    std::string target;
    uint8_t services = kAllServicesMask;
    bool admin = false;         // with root: may lift a lock
    bool self_service = false;  // the end user's own unblock: limited per interval
};

class Session {
public:
    Session(const Config& cfg, StoreWriter& writer, Actor actor, int64_t now);

    Outcome suspend(const SuspendArgs& a);
    Outcome unsuspend(const UnsuspendArgs& a);
    Outcome set_mode(const std::string& target, DeliveryMode mode);
    Outcome sweep(int& lifted);  // lifts suspensions whose expiry has passed
    // Clears the rate counters of a mailbox, and of client IP ip unless it is
    // empty (usage.hpp), at commit; audited as "reset-usage" with the counts cleared.
    Outcome reset_usage(const std::string& target, const std::string& ip);
    // Moves the end of key's rate suspension of send to expires
    // (limits.extend_on_attempt); audited as "extend" with both ends.
    Outcome extend_send(const std::string& key, int64_t expires, const std::string& reason);
    // A change another node of the fleet made: state (verified by the caller)
    // replaces the target's whole state when it is newer by (hlc, origin)
    // (fleet_newer); an older one, or the same one again, changes nothing
    // (applied false).  Audited as "fleet-apply" (unless audit_each is false:
    // a resync from the snapshot, which the agent audits once as a whole);
    // keeps its stamp and origin.
    Outcome apply_fleet_change(const TargetRecord& state, bool& applied, bool audit_each = true);
    // An audit line for something that changes no record (a spam report):
    // action and target, then fields; written at commit, without a seq.
    void record_event(const std::string& key, const std::string& action, nlohmann::json fields);
    // Journals, applies, audits; then runs host commands.  Warnings (a host
    // command that failed) go to warnings; the change stands.
    Outcome commit(std::vector<std::string>& warnings);
    bool empty() const { return pending_.empty(); }

private:
    TargetRecord* load(const std::string& key, std::string& error_r);
    std::string nothing_to_lift(const std::string& key, uint8_t services);
    nlohmann::json& note(const std::string& key, const std::string& action, uint8_t services,
                         const std::string& reason);
    nlohmann::json line(const std::string& key, const std::string& action) const;
    Outcome commit_records(uint64_t& seq);  // journal and audit lines, together
    void stamp(TargetRecord& r) const;      // this node's clock and id, in a fleet
    Outcome commit_usage_resets(std::vector<nlohmann::json>& lines);
    void clear();

    const Config& cfg_;
    StoreWriter& writer_;
    Actor actor_;
    int64_t now_;
    std::map<std::string, TargetRecord> pending_, before_;
    std::map<std::string, bool> from_fleet_;  // keys whose new state came from another node
    std::vector<nlohmann::json> audit_;   // lines of record changes: journaled with them
    std::vector<nlohmann::json> events_;  // lines of events that change no record
    std::vector<std::string> flush_, fail_queued_;  // addresses for host commands
    std::vector<std::string> release_;              // keys whose held send was lifted
    std::vector<std::string> reset_counters_;       // mailboxes whose send was lifted
    struct UsageReset {
        std::string key, ip;
    };
    std::vector<UsageReset> usage_resets_;          // reset-usage: not store changes
};

// The effective state of a target as `status --json` shows it.
nlohmann::json status_json(const Config& cfg, const std::string& key, const TargetRecord* mailbox,
                           const TargetRecord* domain, int64_t now);
// A record's own state (list, audit before/after).
nlohmann::json record_json(const TargetRecord& r, int64_t now);

// Runs a command template ("/usr/sbin/exim4 -Rrff {address_regex}") without
// a shell; {address} and {address_regex} become parts of one argument each.
// No command configured counts as done.  false with what went wrong in error_r.
bool run_command(const std::string& templ, const std::string& address, std::string& error_r,
                 const std::string& address_regex = {});

// Appends JSON lines to the audit log (creating it 0640) in one write() and
// syncs.  false with the error in error_r (errno's text, ENOSPC for a short
// write); then the log is cut back to its size before: never a partial line.
// size_before (when given) gets that size, for undo_audit.
bool append_audit(const std::string& path, const std::vector<nlohmann::json>& lines, std::string& error_r,
                  int64_t* size_before = nullptr);
// Cuts the log back to size_before: the lines of a change that was not stored after all.
void undo_audit(const std::string& path, int64_t size_before);

}  // namespace mailsuspend
