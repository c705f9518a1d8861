#include "usage.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include "config.hpp"
#include "text.hpp"

namespace mailsuspend {

using nlohmann::json;

Outcome canonical_ip(std::string_view text, std::string& ip) {
    const std::string given(text);
    unsigned char raw[16];
    char buf[INET6_ADDRSTRLEN];
    const int family = given.find(':') == std::string::npos ? AF_INET : AF_INET6;
    if (given.empty() || ::inet_pton(family, given.c_str(), raw) != 1 ||
        !::inet_ntop(family, raw, buf, sizeof buf))
        return {Exit::bad_input, "--ip '" + sanitise_line(text, 64) + "': not an IPv4 or IPv6 address"};
    ip = buf;
    return {};
}

Outcome usage_subject(const Config& cfg, std::string_view target, std::string_view ip, std::string& key,
                      std::string& canonical) {
    if (Outcome o = normalise_target(cfg, target, key); !o.ok()) return o;
    if (key.front() == '@' && !ip.empty())
        return {Exit::bad_input, "--ip goes with a mailbox (whose messages came from it), not with a domain"};
    canonical.clear();
    if (ip.empty()) return {};
    return canonical_ip(ip, canonical);
}

namespace {

enum class Whose { mailbox, domain, either, ip };

// Counter kind, its limit's name and value (nullptr: a count with no limit
// of its own), and whose key counts it.
struct Counted {
    CounterKind kind;
    const char* limit_name;
    int64_t Limits::*limit;
    Whose whose;
};

constexpr Counted kCounted[] = {
    {CounterKind::messages, "messages_per_day", &Limits::messages_per_day, Whose::mailbox},
    {CounterKind::offdomain_rcpts, "offdomain_recipients_per_day", &Limits::offdomain_recipients_per_day,
     Whose::mailbox},
    {CounterKind::unknown_rcpts, "unknown_recipients_per_hour", &Limits::unknown_recipients_per_hour, Whose::mailbox},
    {CounterKind::ip_offdomain_rcpts, "offdomain_recipients_per_hour_per_ip",
     &Limits::offdomain_recipients_per_hour_per_ip, Whose::ip},
    {CounterKind::domain_messages, "domain_messages_per_hour", &Limits::domain_messages_per_hour, Whose::domain},
    {CounterKind::domain_offdomain_rcpts, "domain_offdomain_recipients_per_day",
     &Limits::domain_offdomain_recipients_per_day, Whose::domain},
    // limits.failed_share_percent is a share of these two (a mailbox's, a domain's).
    {CounterKind::outbound_outcomes, "failed_share_recipients", nullptr, Whose::either},
    {CounterKind::failed_outcomes, "failed_share_failed", nullptr, Whose::either},
};

// Whether c counts for key (a mailbox or a domain) and ip ("": none asked for).
bool counts_for(const Counted& c, const std::string& key, const std::string& ip) {
    if (c.whose == Whose::ip) return !ip.empty();
    if (c.whose == Whose::either) return true;
    return (c.whose == Whose::domain) == (key.front() == '@');
}

CounterUsage usage_of_one(const Counters& counters, const Counted& c, const std::string& key, int64_t limit,
                          int64_t now) {
    CounterUsage u;
    u.limit_name = c.limit_name;
    u.kind = c.kind;
    u.key = key;
    u.limit = limit;
    u.window = window_length(c.kind);
    u.falls_back = counters.window(key, c.kind, now);
    for (const auto& b : u.falls_back) u.count += b.count;
    if (!u.falls_back.empty()) u.clear_at = u.falls_back.back().leaves;
    // Walk the drops until the count is under the limit (one more may pass).
    int64_t left = u.count;
    for (const auto& b : u.falls_back) {
        if (limit <= 0 || left < limit) break;
        left -= b.count;
        u.under_limit_at = b.leaves;
    }
    return u;
}

json time_or_null(int64_t t) { return t ? json(t) : json(nullptr); }

// limits.login_ips_per_day is counted in a file of its own, written by
// Dovecot's auth process (<store>/login-counters); nullptr when it is absent.
constexpr Counted kLoginIps{CounterKind::login_ips, "login_ips_per_day", &Limits::login_ips_per_day, Whose::mailbox};

std::unique_ptr<Counters> login_counters(const Config& cfg) {
    std::string error;
    return Counters::open(cfg.store_path, false, 0, error, Counters::kLoginCountersName);
}

}  // namespace

Usage usage_of(const Config& cfg, const Counters& counters, const std::string& key, const std::string& ip,
               int64_t now) {
    Usage u;
    u.target = key;
    u.ip = ip;
    u.now = now;
    for (const Counted& c : kCounted)
        if (counts_for(c, key, ip))
            u.counters.push_back(usage_of_one(counters, c, c.whose == Whose::ip ? ip : key,
                                                   c.limit ? cfg.limits.*c.limit : 0, now));
    if (key.front() == '@') return u;
    if (const auto logins = login_counters(cfg))
        u.counters.push_back(usage_of_one(*logins, kLoginIps, key, cfg.limits.login_ips_per_day, now));
    return u;
}

Outcome open_counters(const Config& cfg, std::unique_ptr<Counters>& counters) {
    std::string error;
    counters = Counters::open(cfg.store_path, false, 0, error);
    if (!counters) return {Exit::failure, "rate counters: " + error + " (`mailsuspend init` creates them)"};
    return {};
}

json usage_json(const Usage& u) {
    json counters = json::object();
    for (const auto& c : u.counters) {
        json drops = json::array();
        for (const auto& b : c.falls_back) drops.push_back({{"at", b.leaves}, {"by", b.count}});
        counters[c.limit_name] = {{"key", c.key},
                                  {"count", c.count},
                                  {"limit", c.limit > 0 ? json(c.limit) : json(nullptr)},
                                  {"window", c.window},
                                  {"under_limit_at", time_or_null(c.under_limit_at)},
                                  {"clear_at", time_or_null(c.clear_at)},
                                  {"falls_back", drops}};
    }
    return {{"target", u.target},
            {"ip", u.ip.empty() ? json(nullptr) : json(u.ip)},
            {"time", u.now},
            {"counters", counters}};
}

void reset_usage(const Config& cfg, Counters& counters, const std::string& key, const std::string& ip) {
    for (const Counted& c : kCounted)
        if (counts_for(c, key, ip)) counters.reset(c.whose == Whose::ip ? ip : key, c.kind);
    if (key.front() == '@') return;
    if (const auto logins = login_counters(cfg)) logins->reset(key, CounterKind::login_ips);
}

bool reset_rate_counters(const Config& cfg, std::string_view key, std::string& error_r) {
    if (::access((cfg.store_path + "/counters").c_str(), F_OK) != 0) return true;
    auto counters = Counters::open(cfg.store_path, false, 0, error_r);
    if (!counters) return false;
    if (!key.empty()) reset_usage(cfg, *counters, std::string(key), "");  // never an IP's: others share it
    return true;
}

}  // namespace mailsuspend
