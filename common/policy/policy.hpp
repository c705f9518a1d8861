// Automatic suspension policies (issue 5): the rate limits Exim asks about
// for every outgoing message, spam reports (with ARF attribution), and the
// automatic suspensions both lead to.  The rules, each in one place:
//  - off-domain: a recipient whose normalised domain differs from the
//    sender's (subdomains are other domains; an address that does not
//    normalise counts as off-domain);
//  - a message with more than limits.recipients_per_message recipients is
//    refused and not counted;
//  - otherwise the message is added to the sliding-window counters
//    (messages and off-domain recipients per mailbox per 24h; messages per
//    hour and off-domain recipients per 24h summed over the sender's domain,
//    limits.domain_*, off by default; off-domain recipients per client IP
//    per hour); a message that takes any of them over its limit is refused
//    and taken back out of every counter (refused mail is not counted);
//    over a mailbox limit it suspends "send" of the sender (source rate,
//    for limits.suspend_for), over a domain limit "send" of the domain the
//    same way; over the IP limit it only throttles the IP (temporary
//    refusal while the IP's last hour is
//    full): an IP is shared, and the mailbox whose message happens to
//    cross is not the one that filled it;
//  - a recipient refused at RCPT as non-existent counts against
//    limits.unknown_recipients_per_hour of its sender; the one that would
//    cross suspends the sender like a crossing message;
//  - an attempt to send while rate-suspended moves the expiry to
//    now + suspend_for (limits.extend_on_attempt);
//  - more than spam.threshold reports within spam.window suspend "send"
//    (source spam, until lifted: the user still logs in and receives);
//  - the automatic suspension after limits.escalate_after automatic ones
//    within 30 days has no expiry and is locked;
//  - every automatic suspension leaves an AUP notice pending (notice.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.hpp"
#include "arf.hpp"
#include "count_log.hpp"
#include "counters.hpp"
#include "login_pairs.hpp"
#include "model.hpp"
#include "notice.hpp"
#include "operations.hpp"
#include "token.hpp"

namespace mailsuspend {

class Counters;
class LoginPairs;
class StoreWriter;
struct Config;
struct Limits;

// ---- rate limits ----------------------------------------------------------

// True when recipient's domain differs from the domain of sender_key (a
// normalised mailbox key).  No allocation for ASCII addresses.
bool is_offdomain(std::string_view sender_key, std::string_view recipient, const AddressRules& rules) noexcept;

struct MessageFacts {
    std::string_view sender;     // normalised mailbox key
    std::string_view client_ip;  // empty: not counted per IP (local or webmail submission)
    uint32_t recipients = 0;
    uint32_t offdomain = 0;
    // fleet.counters = "fleet": each limit also counts the other nodes'
    // share of the window (fleet_share() kinds, set by the fleet agent).
    bool fleet_shares = false;
};

// crossed: a limit of the sender's own mailbox (its send is suspended);
// ip_throttled: the client IP's hourly off-domain limit, which many
// mailboxes share: the message is refused for now and nobody is suspended.
enum class RateVerdict { allow, too_many_recipients, crossed, ip_throttled, unavailable };

struct RateDecision {
    RateVerdict verdict = RateVerdict::allow;
    const char* limit = "";  // the limit's config name, e.g. "messages_per_day"
    int64_t total = 0;       // the count with this message
    int64_t max = 0;         // the limit
    bool domain = false;     // crossed: a limit of the sender's domain (its send is suspended)
    int64_t of = 0;          // failed_share_percent: the recipients with an outcome (total is the failed ones)
};

// Counts one message against the limits (see above).  No allocation, no
// system call.  unavailable: no counters (nullptr), or the table is full
// (nothing counted; the caller lets the mail pass and logs).
RateDecision count_message(const Limits& limits, Counters* counters, const MessageFacts& m,
                           int64_t now) noexcept;

// "6 messages within 24h (limits.messages_per_day = 5)".
std::string describe(const RateDecision& d, std::string_view client_ip);

// One recipient of sender (a normalised mailbox key) refused at RCPT as
// non-existent: counted against limits.unknown_recipients_per_hour.
// crossed when this one would take the hour past the limit (then, as for a
// message, it is not counted); unavailable as above.
RateDecision count_unknown_recipient(const Limits& limits, Counters* counters, std::string_view sender,
                                     int64_t now) noexcept;

// ---- delivery outcomes (limits.failed_share_*) -----------------------------
//
// What a remote recipient of a submission came to at a delivery attempt.
// Only a recipient's first attempt counts (its message's first delivery
// attempt): each recipient is counted once, and a deferral that a retry
// delivers (or bounces, days later) is never counted again.  A deferral
// counts as failed only when it is the sender's first to that recipient
// domain within the hour: one slow or greylisting remote host adds at most
// one failure an hour however many recipients it defers.  Bounces all count.

enum class DeliveryOutcome : uint8_t { delivered, bounced, deferred };

struct OutcomeFacts {
    std::string_view sender;     // normalised mailbox key
    std::string_view recipient;  // the address (its domain keys the deferral marks)
    DeliveryOutcome outcome = DeliveryOutcome::delivered;
    bool first_attempt = true;   // false: a retry, counted nothing
};

// Counts one outcome for the sender's mailbox and for its domain.  crossed
// (domain set for the domain's) when at least failed_share_min_recipients
// recipients have an outcome within the hour and more than
// failed_share_percent of them failed: the mailbox is looked at first.
// allow when off (0) or not counted; unavailable when the counters are.
RateDecision count_delivery_outcome(const Limits& limits, Counters* counters, const OutcomeFacts& o,
                                    int64_t now) noexcept;

// After mailbox crossed the share: its hour of outcomes leaves its domain's
// counts, so the domain is judged on its other mailboxes.  One compromised
// mailbox does not take its domain's send down with it, then or at the next
// bounce after its own lift.
void take_out_of_domain(Counters& counters, std::string_view mailbox, int64_t now);

// One successful login of mailbox (a normalised key) from client_ip (never
// a webmail host's: the caller leaves those out) against
// limits.login_ips_per_day: the (mailbox, IP) pair is recorded in pairs; a
// pair not seen within the 24 hours before counts one into the mailbox's
// 24-hour window in counters (kind login_ips).  crossed when that count
// would pass the limit (then neither the pair nor the count is kept);
// unavailable when a table is missing or full.  No allocation, no system
// call, no lock.
RateDecision count_login(const Limits& limits, LoginPairs* pairs, Counters* counters, std::string_view mailbox,
                         std::string_view client_ip, int64_t now) noexcept;

// ---- automatic suspensions ------------------------------------------------

struct AutoSuspension {
    bool suspended_now = false;  // false: send was already suspended (nothing new)
    bool extended = false;
    bool locked = false;
    int64_t expires = 0;  // 0 = until lifted
};

// Suspends send of key (a normalised mailbox) for source rate or spam with
// the escalation rule, through Session (journal + audit log), and marks the
// AUP notice pending.  Already suspended: for rate, extends instead.
// services: send, plus the login services for limits.login_ips_action =
// "logins" (those already in force are left as they are).
Outcome suspend_automatically(const Config& cfg, StoreWriter& writer, const Actor& actor,
                              const std::string& key, Source source, const std::string& why, int64_t now,
                              AutoSuspension& out, std::vector<std::string>& warnings,
                              uint8_t services = kSendMask);

// Should an attempt while state is in force move its expiry?  (Checked
// before a writer is opened: at most one extension a minute, or a tenth
// of suspend_for when that is shorter.)
bool extension_due(const Config& cfg, const ServiceState& state, int64_t now);

// Moves the expiry of a rate suspension of key's send to now + suspend_for
// and records it in the audit log ("extend").
Outcome extend_rate_suspension(const Config& cfg, StoreWriter& writer, const Actor& actor,
                               const std::string& key, int64_t now, bool& extended,
                               std::vector<std::string>& warnings);

// ---- spam reports ---------------------------------------------------------

struct SpamReport {
    std::string address;                // as given; normalised here
    std::string origin;                 // "cli", "arf (token)", ...
    std::vector<std::string> evidence;  // sample messages
    std::string message;                // the reported message's id ("token:<nonce>"); "" = unknown, counted
};

struct SpamResult {
    Outcome outcome;
    std::string key;
    int64_t in_window = 0;  // distinct reported messages within spam.window, this one included
    bool duplicate = false; // this message was already reported within the window: not counted again
    AutoSuspension suspension;
};

// Records one report durably (<evidence>/<key>/reports, under the writer
// lock, so concurrent reports count exactly), keeps the evidence as
// samples, audits it, and suspends when over the threshold.  One report
// per reported message: a report of a message (report.message) already
// reported within spam.window is audited but not counted again, so one
// genuine token replayed in many reports counts once.
SpamResult record_spam_report(const Config& cfg, StoreWriter& writer, const Actor& actor,
                              const SpamReport& report, int64_t now, std::vector<std::string>& warnings);

// Who an ARF report is about.  Trusted: a valid X-Mailsuspend-Token in the
// reported message (sealed by our Exim for the authenticated account).
// Fallback (token_only = false): the report's Original-Mail-From, then the
// reported message's Return-Path: envelope data, forgeable, so `how` says
// so.  Never the From header.  A token that does not verify is bad input.
struct Attribution {
    std::string address;
    std::string how;        // "token", "Original-Mail-From (no token)", "Return-Path (no token)"
    int64_t token_issued = 0;
    std::string message;    // "token:<nonce>" for a token: one id per reported message
};
// A token older than spam.token_max_age (or issued in the future) is refused.
Outcome attribute_arf(const Config& cfg, const ArfReport& report, bool token_only, int64_t now, Attribution& out);

// ---- per C-API handle -----------------------------------------------------

// Opened lazily by the C API: the counters file and the token key, retried
// at most once a second when missing.
struct PolicyState {
    std::unique_ptr<Counters> counters;
    // limits.login_ips_per_day (Dovecot's auth process): opened once, on the first login.
    std::unique_ptr<LoginPairs> login_pairs;
    std::unique_ptr<Counters> login_counters;
    int64_t next_logins_attempt = 0;
    bool logins_logged = false;
    int64_t next_counters_attempt = 0;
    int64_t next_counters_check = 0;  // replaced()/usable() at most once a second
    bool counters_logged = false;
    // fleet.counters = "fleet": the senders counted, for the fleet agent.
    std::unique_ptr<CountLog> count_log;
    int64_t next_count_log_attempt = 0;
    bool count_log_logged = false;
    std::optional<TokenKey> token_key;
    int64_t next_key_attempt = 0;
    bool key_logged = false;
};

}  // namespace mailsuspend
