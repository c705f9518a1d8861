// The usage view (issue 11 item 6): each rate counter of a mailbox (and,
// asked for, of a client IP) against its limit, and when it falls back.
// The counters are sliding windows of buckets (counters.hpp): the count
// drops each time the oldest bucket leaves the window, by that bucket's
// count, so the times are exact, not estimates.  `mailsuspend usage` prints
// this; `mailsuspend reset-usage` clears the counters through Session
// (operations.hpp), which audits it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "counters.hpp"
#include "outcome.hpp"

namespace mailsuspend {

struct CounterUsage {
    const char* limit_name = "";  // the limit's config key under limits., e.g. "messages_per_day"
    CounterKind kind = CounterKind::messages;
    std::string key;              // the mailbox or domain key, or the client IP
    int64_t count = 0;            // in the window now
    int64_t limit = 0;            // 0: the limit is off
    int64_t window = 0;           // seconds
    std::vector<CountedBucket> falls_back;  // oldest first: the count drops by count at leaves
    // When the count is under the limit again (a message of one more can pass);
    // 0 when it already is, or the limit is off.
    int64_t under_limit_at = 0;
    int64_t clear_at = 0;  // when the window is empty; 0 when it already is
};

struct Usage {
    std::string target;  // the normalised mailbox or domain
    std::string ip;      // canonical client IP, or "" when not asked for
    int64_t now = 0;
    std::vector<CounterUsage> counters;
};

// A client IP as Exim gives it ($sender_host_address: inet_ntop's form), so
// "2001:DB8:0::1" finds the count of "2001:db8::1".  Exit::bad_input naming it when not an IP.
Outcome canonical_ip(std::string_view text, std::string& ip);

// Normalises target (a mailbox, or a domain for its limits.domain_* sums)
// and ip ("" for none; only with a mailbox).  Exit::bad_input with the reason.
Outcome usage_subject(const Config& cfg, std::string_view target, std::string_view ip, std::string& key,
                      std::string& canonical);

// The usage of key (normalised) and ip (canonical or "") at now, read from
// counters.
Usage usage_of(const Config& cfg, const Counters& counters, const std::string& key, const std::string& ip,
               int64_t now);

// Opens <store.path>/counters; Exit::failure with the reason when it cannot.
Outcome open_counters(const Config& cfg, std::unique_ptr<Counters>& counters);

// As `usage --json` prints it.
nlohmann::json usage_json(const Usage& u);

// Clears the counters usage_of reads (the IP's only when ip is set).
// A mailbox's limits.login_ips_per_day count (<store>/login-counters) too.
void reset_usage(const Config& cfg, Counters& counters, const std::string& key, const std::string& ip);

// A lifted send suspension starts afresh: forgets the mailbox's message,
// off-domain and unknown-recipient counts (not its IPs': other mailboxes
// share them), or a domain key's own sums, and the key's delivery outcomes
// (limits.failed_share_*), or the next message or outcome within the
// window would cross again at once and escalate.
// false with what went wrong in error_r (a missing counters file is not an error).
bool reset_rate_counters(const Config& cfg, std::string_view key, std::string& error_r);

}  // namespace mailsuspend
