// The admin's mail of `mailsuspend notify` (alerts.admin_address): one short
// message per automatic suspension (a rate limit, a domain limit, spam
// reports) and per escalation (a repeated one: locked, no expiry), read from
// the suspension's audit line.
#pragma once

#include <cstdint>
#include <string>

#include "config.hpp"

namespace mailsuspend::cli {

struct AutomaticSuspension {
    std::string target;
    std::string source;  // "rate" or "spam"
    std::string reason;  // "automatic: 6 messages within 24h (limits.messages_per_day = 5)"
    bool locked = false; // an escalation
    int64_t time = 0;
    int64_t expires = 0;  // 0: none
    uint64_t seq = 0;
};

// Whether line is the audit line of an automatic suspension: action
// "suspend" whose services after it came from a policy (source rate or spam)
// and began at the line's time.
bool automatic_suspension(const std::string& line, AutomaticSuspension& out);

// The complete message to cfg.alerts.admin_address (LF line ends).
std::string alert_mail(const Config& cfg, const AutomaticSuspension& s);

}  // namespace mailsuspend::cli
