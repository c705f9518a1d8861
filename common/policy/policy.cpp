#include "policy.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "config.hpp"
#include "files.hpp"
#include "counters.hpp"
#include "login_pairs.hpp"
#include "metrics.hpp"
#include "store.hpp"
#include "text.hpp"

namespace mailsuspend {

using nlohmann::json;

// ---- rate limits ----------------------------------------------------------

bool is_offdomain(std::string_view sender_key, std::string_view recipient, const AddressRules& rules) noexcept {
    char buf[kKeyBufferSize];
    TargetKind kind = TargetKind::mailbox;
    const std::size_t n = normalise(recipient, rules, buf, sizeof buf, &kind, nullptr);
    if (n == 0 || kind != TargetKind::mailbox) return true;  // not a plain address: not ours to vouch for
    return domain_key_of(std::string_view(buf, n)) != domain_key_of(sender_key);
}

RateDecision count_message(const Limits& limits, Counters* counters, const MessageFacts& m,
                           int64_t now) noexcept {
    if (limits.recipients_per_message > 0 && m.recipients > limits.recipients_per_message)
        return {RateVerdict::too_many_recipients, "recipients_per_message", m.recipients,
                limits.recipients_per_message};
    struct Step {
        CounterKind kind;
        std::string_view key;
        uint32_t n;
        int64_t max;
        const char* name;
    };
    // The domain's counts are the sums of its mailboxes' messages, kept under the domain's key.
    const std::string_view domain = domain_key_of(m.sender);
    const Step steps[] = {
        {CounterKind::messages, m.sender, 1, limits.messages_per_day, "messages_per_day"},
        {CounterKind::offdomain_rcpts, m.sender, m.offdomain, limits.offdomain_recipients_per_day,
         "offdomain_recipients_per_day"},
        {CounterKind::domain_messages, domain, 1, limits.domain_messages_per_hour, "domain_messages_per_hour"},
        {CounterKind::domain_offdomain_rcpts, domain, m.offdomain, limits.domain_offdomain_recipients_per_day,
         "domain_offdomain_recipients_per_day"},
        {CounterKind::ip_offdomain_rcpts, m.client_ip, m.offdomain, limits.offdomain_recipients_per_hour_per_ip,
         "offdomain_recipients_per_hour_per_ip"},
    };
    RateDecision d;
    if (m.recipients == 0) return d;
    if (!counters) return {RateVerdict::unavailable, "", 0, 0};
    int added = 0;
    for (const Step& s : steps) {
        if (s.max <= 0 || s.n == 0 || s.key.empty()) {
            ++added;  // nothing added for this one: undo() skips it the same way
            continue;
        }
        // Counted only if it stays within the limit: a message that crosses
        // leaves this count as it was for every other sender measured by it.
        const int64_t others = m.fleet_shares ? std::max<int64_t>(counters->total(s.key, fleet_share(s.kind), now), 0) : 0;
        const int64_t own = counters->add_within(s.key, s.kind, s.n, std::max<int64_t>(s.max - others, 0), now);
        const int64_t total = own < 0 ? own : own + others;
        if (total < 0) {
            d = {RateVerdict::unavailable, s.name, 0, s.max};
            break;
        }
        if (total > s.max) {
            const bool ip = s.kind == CounterKind::ip_offdomain_rcpts;
            d = {ip ? RateVerdict::ip_throttled : RateVerdict::crossed, s.name, total, s.max, s.key == domain};
            break;
        }
        ++added;
    }
    if (d.verdict == RateVerdict::allow) return d;
    // Refused (or not countable): take the message back out of the counters it entered.
    for (int i = 0; i < added; ++i) {
        const Step& s = steps[i];
        if (s.max <= 0 || s.n == 0 || s.key.empty()) continue;
        counters->remove(s.key, s.kind, s.n, now);
    }
    return d;
}

RateDecision count_unknown_recipient(const Limits& limits, Counters* counters, std::string_view sender,
                                     int64_t now) noexcept {
    const int64_t max = limits.unknown_recipients_per_hour;
    if (max <= 0 || sender.empty()) return {};
    if (!counters) return {RateVerdict::unavailable, "", 0, 0};
    // As a message over a limit: the one that crosses is not counted, so
    // after an automatic lift the next one crosses again (and escalates).
    const int64_t total = counters->add_within(sender, CounterKind::unknown_rcpts, 1, max, now);
    if (total < 0) return {RateVerdict::unavailable, "unknown_recipients_per_hour", 0, max};
    if (total <= max) return {};
    return {RateVerdict::crossed, "unknown_recipients_per_hour", total, max};
}

namespace {

// The recipient's domain of an address ("" without one).
std::string_view domain_of(std::string_view address) {
    const auto at = address.rfind('@');
    return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

// True for the first deferral from key (a mailbox's or a domain's) to
// recipient_domain within the hour: the mark is a count under
// "<key>/<domain>" (domain names are compared as given, cut to fit).
bool first_deferral(Counters& counters, std::string_view key, std::string_view recipient_domain, int64_t now) {
    char buf[kKeyBufferSize * 2];
    const std::size_t n = std::min(key.size(), sizeof buf / 2);
    std::memcpy(buf, key.data(), n);
    buf[n] = '/';
    const std::size_t m = std::min(recipient_domain.size(), sizeof buf - n - 1);
    for (std::size_t i = 0; i < m; ++i)
        buf[n + 1 + i] = static_cast<char>(std::tolower(static_cast<unsigned char>(recipient_domain[i])));
    return counters.add(std::string_view(buf, n + 1 + m), CounterKind::deferral_marks, 1, now) == 1;
}

// Counts the outcome under key; -1 when the counters are unusable, else
// 1 when key's hour is over the share, 0 when not.  out: failed, of.
int count_share(const Limits& limits, Counters& counters, std::string_view key, const OutcomeFacts& o,
                int64_t now, int64_t& failed, int64_t& of) {
    bool fails = o.outcome == DeliveryOutcome::bounced;
    if (o.outcome == DeliveryOutcome::deferred) fails = first_deferral(counters, key, domain_of(o.recipient), now);
    of = counters.add(key, CounterKind::outbound_outcomes, 1, now);
    failed = fails ? counters.add(key, CounterKind::failed_outcomes, 1, now)
                   : counters.total(key, CounterKind::failed_outcomes, now);
    if (of < 0 || failed < 0) return -1;
    return of >= limits.failed_share_min_recipients && failed * 100 > limits.failed_share_percent * of ? 1 : 0;
}

}  // namespace

RateDecision count_delivery_outcome(const Limits& limits, Counters* counters, const OutcomeFacts& o,
                                    int64_t now) noexcept {
    const int64_t percent = limits.failed_share_percent;
    if (percent <= 0 || o.sender.empty() || !o.first_attempt) return {};
    if (!counters) return {RateVerdict::unavailable, "", 0, 0};
    const std::string_view keys[] = {o.sender, domain_key_of(o.sender)};
    RateDecision d;
    for (const std::string_view key : keys) {
        int64_t failed = 0, of = 0;
        const int over = count_share(limits, *counters, key, o, now, failed, of);
        if (over < 0) return {RateVerdict::unavailable, "failed_share_percent", 0, percent};
        // The domain counts on after its mailbox crossed: it sums every mailbox.
        if (over > 0 && d.verdict == RateVerdict::allow)
            d = {RateVerdict::crossed, "failed_share_percent", failed, percent, key != o.sender, of};
    }
    return d;
}

void take_out_of_domain(Counters& counters, std::string_view mailbox, int64_t now) {
    for (const CounterKind kind : {CounterKind::outbound_outcomes, CounterKind::failed_outcomes})
        for (const CountedBucket& b : counters.window(mailbox, kind, now))  // each from the bucket it was added in
            counters.remove(domain_key_of(mailbox), kind, b.count, b.leaves - window_length(kind));
}

RateDecision count_login(const Limits& limits, LoginPairs* pairs, Counters* counters, std::string_view mailbox,
                         std::string_view client_ip, int64_t now) noexcept {
    const int64_t max = limits.login_ips_per_day;
    if (max <= 0 || mailbox.empty() || client_ip.empty()) return {};
    constexpr const char* kName = "login_ips_per_day";
    if (!pairs || !counters) return {RateVerdict::unavailable, kName, 0, max};
    switch (pairs->note(mailbox, client_ip, now)) {
        case LoginPairs::Seen::again:
            return {};
        case LoginPairs::Seen::unknown:
            return {RateVerdict::unavailable, kName, 0, max};
        case LoginPairs::Seen::fresh:
            break;
    }
    // The pair and its count enter together; a crossing enters neither, so
    // the refused IP is new again next time (and crosses again: escalation).
    const int64_t total = counters->add_within(mailbox, CounterKind::login_ips, 1, max, now);
    if (total >= 0 && total <= max) return {};
    pairs->forget(mailbox, client_ip, now);
    if (total < 0) return {RateVerdict::unavailable, kName, 0, max};
    return {RateVerdict::crossed, kName, total, max};
}

std::string describe(const RateDecision& d, std::string_view client_ip) {
    const std::string limit = "(limits." + std::string(d.limit) + " = " + std::to_string(d.max) + ")";
    const std::string name = d.limit;
    if (name == "recipients_per_message")
        return std::to_string(d.total) + " recipients in one message " + limit;
    if (name == "messages_per_day") return std::to_string(d.total) + " messages within 24h " + limit;
    if (name == "offdomain_recipients_per_day")
        return std::to_string(d.total) + " off-domain recipients within 24h " + limit;
    if (name == "domain_messages_per_hour")
        return std::to_string(d.total) + " messages from the domain's mailboxes within 1h " + limit;
    if (name == "domain_offdomain_recipients_per_day")
        return std::to_string(d.total) + " off-domain recipients from the domain's mailboxes within 24h " + limit;
    if (name == "unknown_recipients_per_hour")
        return std::to_string(d.total) + " recipients refused as non-existent within 1h " + limit;
    if (name == "failed_share_percent")
        return std::to_string(d.total) + " of " + std::to_string(d.of) + " remote recipients" +
               (d.domain ? " of the domain's mailboxes" : "") + " bounced or deferred within 1h " + limit;
    if (name == "login_ips_per_day")
        return std::to_string(d.total) + " client IPs logged in within 24h, the last from " +
               sanitise_line(client_ip, 64) + " " + limit;
    return std::to_string(d.total) + " off-domain recipients within 1h from " + sanitise_line(client_ip, 64) +
           " " + limit;
}

// ---- automatic suspensions ------------------------------------------------

bool extension_due(const Config& cfg, const ServiceState& s, int64_t now) {
    if (!cfg.limits.extend_on_attempt || !s.in_force(now) || s.source != Source::rate || s.expires == 0)
        return false;
    const int64_t step = std::max<int64_t>(1, std::min<int64_t>(60, cfg.limits.suspend_for / 10));
    return now + cfg.limits.suspend_for - s.expires >= step;
}

Outcome extend_rate_suspension(const Config& cfg, StoreWriter& writer, const Actor& actor, const std::string& key,
                               int64_t now, bool& extended, std::vector<std::string>& warnings) {
    extended = false;
    TargetRecord r;
    if (!writer.get(key, r)) return {Exit::failure, "cannot read " + key + " from the store"};
    const ServiceState& s = r.at(Service::send);
    const int64_t next = now + cfg.limits.suspend_for;
    if (!s.in_force(now) || s.source != Source::rate || s.expires == 0 || next <= s.expires) return {};
    Session session(cfg, writer, actor, now);
    Outcome o = session.extend_send(key, next, "attempt to send while rate-suspended (limits.extend_on_attempt)");
    if (!o.ok()) return o;
    if (Outcome c = session.commit(warnings); !c.ok()) return c;
    extended = true;
    return o;
}

Outcome suspend_automatically(const Config& cfg, StoreWriter& writer, const Actor& actor, const std::string& key,
                              Source source, const std::string& why, int64_t now, AutoSuspension& out,
                              std::vector<std::string>& warnings, uint8_t services) {
    out = {};
    TargetRecord r;
    if (!writer.get(key, r)) return {Exit::failure, "cannot read " + key + " from the store"};
    const ServiceState& current = r.at(Service::send);
    // Services beyond send (limits.login_ips_action = "logins"): those not in force yet.
    const uint8_t others = services & ~kSendMask & ~r.in_force_mask(now);
    // A spam suspension has no end: one that finds send suspended for a while
    // (a rate suspension, an admin's --for) takes over, else it would be lost
    // when that one expires.
    const bool spam_takes_over = source == Source::spam && current.expires != 0;
    if (current.in_force(now) && !spam_takes_over && !others) {  // another process (or an admin) got there first
        out.locked = current.locked;
        out.expires = current.expires;
        if (source == Source::rate && extension_due(cfg, current, now)) {
            Outcome o = extend_rate_suspension(cfg, writer, actor, key, now, out.extended, warnings);
            if (out.extended) out.expires = now + cfg.limits.suspend_for;
            return o;
        }
        return {Exit::ok, "send of " + key + " is already suspended"};
    }
    const auto recent = std::count_if(r.auto_suspensions.begin(), r.auto_suspensions.end(),
                                      [&](int64_t t) { return t > now - kEscalationWindow; });
    const bool escalate = cfg.limits.escalate_after > 0 && recent >= cfg.limits.escalate_after;
    SuspendArgs a;
    a.target = key;
    a.services = current.in_force(now) && !spam_takes_over ? others : static_cast<uint8_t>(others | kSendMask);
    a.source = source;
    a.lock = escalate;
    // limits.action / spam.action: accept the account's mail and hold it instead.
    a.hold = (a.services & kSendMask) &&  // send already in force (the login services only): as it is
             (source == Source::spam ? cfg.spam_action : cfg.limits.action) == SendAction::hold;
    a.duration = (source == Source::rate && !escalate) ? cfg.limits.suspend_for : 0;
    a.reason = sanitise_line("automatic: " + why + (escalate ? "; repeated, so permanent" : ""), kMaxReason);
    Session session(cfg, writer, actor, now);
    if (Outcome o = session.suspend(a); !o.ok()) return o;
    if (Outcome o = session.commit(warnings); !o.ok()) return o;
    out.suspended_now = true;
    out.locked = escalate;
    out.expires = a.duration ? now + a.duration : 0;
    std::string notice_why = why;
    if (escalate)
        notice_why += "; this is automatic suspension " + std::to_string(recent + 1) +
                      " within 30 days, so it has no expiry and is locked (only root with --admin lifts it)";
    else if (out.expires)
        notice_why += "; it lifts automatically on " + format_time(out.expires) + " unless sending attempts continue";
    if (std::string e; !mark_notice_pending(cfg, key, source_name(source), notice_why, now, e))
        warnings.push_back("AUP notice for " + key + " not queued: " + e);
    return {Exit::ok, service_list(a.services) + " of " + key + " suspended automatically (" + std::string(source_name(source)) + ")" +
                          (out.expires ? " until " + format_time(out.expires) : "") + (escalate ? ", locked" : "")};
}

// ---- spam reports ---------------------------------------------------------

namespace {

// The reports within the window (the file holds one line per reported
// message: "<epoch>" or "<epoch> <message id>"), plus this one unless its
// message is among them; rewrites the file with just those.  in_window: the
// distinct messages; duplicate: this message was already counted.  false
// with the error in error_r.
bool update_reports(const Config& cfg, const std::string& key, const std::string& message, int64_t now,
                    int64_t& in_window, bool& duplicate, std::string& error_r) {
    std::string dir;
    if (!ensure_evidence_dir(cfg, key, dir, error_r)) return false;
    const std::string path = dir + "/reports";
    std::vector<std::string> kept;
    duplicate = false;
    std::string old_text;
    if (!read_small_file(path, old_text, {.limit = 64 << 20}) && errno != ENOENT)
        return error_r = path + ": " + std::strerror(errno), false;
    for (const std::string_view view : lines_of(old_text)) {
        const std::string line(view);
        const int64_t t = std::strtoll(line.c_str(), nullptr, 10);
        if (t <= now - cfg.spam_window || t > now) continue;
        const auto space = line.find(' ');
        if (!message.empty() && space != std::string::npos && line.compare(space + 1, std::string::npos, message) == 0)
            duplicate = true;
        kept.push_back(line);
    }
    if (!duplicate) kept.push_back(std::to_string(now) + (message.empty() ? "" : " " + message));
    std::string text;
    for (const auto& line : kept) text += line + "\n";
    const std::string tmp = path + ".new." + std::to_string(::getpid());
    if (!write_small_file(tmp, text)) return error_r = tmp + ": cannot write: " + std::strerror(errno), false;
    if (::rename(tmp.c_str(), path.c_str()) != 0) return error_r = path + ": " + std::strerror(errno), false;
    in_window = static_cast<int64_t>(kept.size());
    return true;
}

}  // namespace

namespace {
// A report is recorded by a store writer (root or store.write_group): it
// counts into the writers' file.  Not on a mail path: open, add, close.
void count_for_metrics(const Config& cfg, int slot) {
    std::string ignored;  // no metrics file: nothing to count into
    if (auto w = metrics::Writer::open(metrics::path_of(cfg.store_path, metrics::HostClass::exim), ignored)) w->add(slot);
}
}  // namespace

SpamResult record_spam_report(const Config& cfg, StoreWriter& writer, const Actor& actor, const SpamReport& report,
                              int64_t now, std::vector<std::string>& warnings) {
    SpamResult r;
    if (r.outcome = normalise_target(cfg, report.address, r.key); !r.outcome.ok()) return r;
    if (r.key.front() == '@') {
        r.outcome = {Exit::bad_input, "a spam report names a mailbox (user@example.com), not a domain"};
        return r;
    }
    // The writer lock is held: concurrent reports are counted one after the other.
    if (std::string e; !update_reports(cfg, r.key, report.message, now, r.in_window, r.duplicate, e)) {
        r.outcome = {Exit::failure, "report not recorded: " + e};
        return r;
    }
    for (const auto& text : report.evidence) {
        std::string error;
        if (keep_sample(cfg, r.key, text, now, error) < 0) warnings.push_back("evidence not kept: " + error);
    }
    Session session(cfg, writer, actor, now);
    session.record_event(r.key, "spam-report",
                         {{"origin", sanitise_line(report.origin, 120)},
                          {"reports_in_window", r.in_window},
                          {"duplicate", r.duplicate},
                          {"threshold", cfg.spam_threshold}});
    if (Outcome o = session.commit(warnings); !o.ok()) {
        r.outcome = o;
        return r;
    }
    count_for_metrics(cfg, metrics::kSpamReports);
    const std::string counted = "spam reports about " + std::to_string(r.in_window) +
                                " distinct message(s) within " + format_duration(cfg.spam_window) +
                                " (spam.threshold = " + std::to_string(cfg.spam_threshold) + ")";
    if (r.duplicate) {  // counted when it was first reported: nothing new to decide
        r.outcome = {Exit::ok, "a spam report for " + r.key + " about a message already reported (" +
                                   report.message + "): not counted again; " + counted};
        return r;
    }
    if (cfg.spam_threshold <= 0 || r.in_window <= cfg.spam_threshold) {
        r.outcome = {Exit::ok, "recorded a spam report for " + r.key + ": " + counted};
        return r;
    }
    Outcome o = suspend_automatically(cfg, writer, actor, r.key, Source::spam, counted, now, r.suspension, warnings);
    if (!o.ok()) {
        r.outcome = {o.code, "report recorded (" + counted + "), but suspending failed: " + o.message};
        return r;
    }
    if (r.suspension.suspended_now)
        count_for_metrics(cfg, metrics::auto_suspension_slot(metrics::AutoCause::spam));
    r.outcome = {Exit::ok, "recorded a spam report for " + r.key + ": " + counted + "; " + o.message};
    return r;
}

Outcome attribute_arf(const Config& cfg, const ArfReport& report, bool token_only, int64_t now, Attribution& out) {
    out = {};
    if (!report.tokens.empty()) {
        std::string error;
        const auto key = load_token_key(cfg.store_path, error);
        if (!key) return {Exit::failure, "cannot verify the reported message's " + std::string(MAILSUSPEND_TOKEN_HEADER) + ": " + error};
        std::string last_error;
        for (const auto& text : report.tokens) {
            auto t = open_token(*key, text, last_error);
            if (!t) continue;
            if (!out.address.empty() && out.address != t->account)
                return {Exit::bad_input, "the reported message carries tokens of two different accounts; nothing recorded"};
            // A complaint comes within days of the message; an old token is
            // one kept to be replayed.  (Five minutes of clock skew between
            // the host that sealed and this one are tolerated.)
            if (now - t->issued > cfg.spam_token_max_age || t->issued > now + 300)
                return {Exit::bad_input, std::string(MAILSUSPEND_TOKEN_HEADER) + " of the reported message was issued " +
                                             format_time(t->issued) + ", " +
                                             (t->issued > now ? "in the future" : "longer ago than spam.token_max_age (" +
                                                                                    format_duration(cfg.spam_token_max_age) + ")") +
                                             "; nothing recorded"};
            if (!out.message.empty() && out.message != "token:" + t->message)
                return {Exit::bad_input, "the reported message carries two different tokens; nothing recorded"};
            out.address = t->account;
            out.token_issued = t->issued;
            out.message = "token:" + t->message;
        }
        if (out.address.empty())
            return {Exit::bad_input, std::string(MAILSUSPEND_TOKEN_HEADER) + " of the reported message is not valid (" + last_error +
                                         "): forged or altered; nothing recorded"};
        out.how = "token";
        return {};
    }
    if (token_only)
        return {Exit::bad_input, "the reported message carries no " + std::string(MAILSUSPEND_TOKEN_HEADER) +
                                     " (--token-only); nothing recorded"};
    if (!report.original_mail_from.empty()) {
        out.address = report.original_mail_from;
        out.how = "Original-Mail-From (no token: envelope data, forgeable)";
    } else if (!report.return_path.empty()) {
        out.address = report.return_path;
        out.how = "Return-Path (no token: envelope data, forgeable)";
    } else {
        return {Exit::bad_input, "cannot attribute the report: the reported message has no " + std::string(MAILSUSPEND_TOKEN_HEADER) +
                                     ", and there is no Original-Mail-From or Return-Path (From is never trusted)"};
    }
    return {};
}


}  // namespace mailsuspend
