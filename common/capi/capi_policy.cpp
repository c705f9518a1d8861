// The C API of the automatic suspension policies (issue 5): rate counting,
// evidence samples, sender tokens.  Kept apart from capi.cpp so a host that
// only checks (Dovecot) links neither these rules nor libcrypto.
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "address.hpp"
#include "capi_internal.hpp"
#include "counters.hpp"
#include "operations.hpp"
#include "outbox.hpp"
#include "policy.hpp"
#include "spawn.hpp"
#include "text.hpp"
#include "token.hpp"

using namespace mailsuspend;
using namespace mailsuspend::capi;


namespace {

Actor exim_actor() {
    Actor a;
    a.uid = ::getuid();
    a.name = "exim";
    return a;
}

void log_warnings(struct mailsuspend_handle* ms, const std::vector<std::string>& warnings) {
    for (const auto& w : warnings) log_line(ms, MAILSUSPEND_LOG_WARNING, "mailsuspend: " + w);
}

// Changes pending in the outbox that a host's writer applies on the way
// (a few only: the SMTP session may be waiting for it; the CLI and the sweep
// take the rest).
constexpr std::size_t kOutboxPerHostWriter = 8;

// A writer for a change decided in a mail server's process: the lock is
// waited for store.host_lock_wait_ms at most.  When it stays taken, entry
// goes to the outbox instead (logged) and nullptr is returned: the decision
// stands, the change is made by the next writer.
std::unique_ptr<StoreWriter> open_writer(struct mailsuspend_handle* ms, const OutboxEntry& entry) {
    std::string error;
    LockWait wait;
    wait.timeout_ms = ms->cfg.host_lock_wait_ms;
    auto writer = StoreWriter::open(ms->cfg, false, error, &wait);
    if (writer) {
        std::vector<std::string> warnings, done;
        outbox_apply(ms->cfg, *writer, warnings, counters_of(ms, std::time(nullptr)), &done, kOutboxPerHostWriter);
        for (const auto& d : done) log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: " + d);
        for (const auto& w : warnings) log_line(ms, MAILSUSPEND_LOG_WARNING, "mailsuspend: " + w);
        return writer;
    }
    if (!wait.busy) {
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: cannot change the store for " + entry.key + ": " + error);
        return nullptr;
    }
    const char* what = entry.op == OutboxOp::rate_suspend ? "rate suspension" : "extension";
    if (std::string e; !outbox_put(ms->cfg, entry, e, counters_of(ms, std::time(nullptr))))
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: " + std::string(what) + " of " + entry.key +
                                                " lost: " + error + "; and the outbox failed: " + e);
    else
        log_line(ms, MAILSUSPEND_LOG_WARNING, "mailsuspend: " + std::string(what) + " of " + entry.key +
                                                  " handed to the outbox (applied by the next writer): " + error);
    return nullptr;
}

// A change this process could not commit (the audit log or the journal
// cannot be written, e.g. a log Exim may not append to): handed to the outbox,
// so the next writer (root's CLI, the sweep) retries it instead of losing it.
void hand_on(struct mailsuspend_handle* ms, const OutboxEntry& entry, const std::string& failure) {
    if (std::string e; !outbox_put(ms->cfg, entry, e, counters_of(ms, std::time(nullptr))))
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: " + failure + "; lost (the outbox failed too: " + e + ")");
    else
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: " + failure + "; handed to the outbox for the next writer");
}

// A change decided in this (mail server's) process is made by a detached
// writer (admin/spawn.hpp): this process waits store.host_write_wait_ms at
// most for it, so neither a held lock nor a slow disk (the fdatasync of the
// audit log and the journal) holds up an SMTP reply.  The writer waits
// store.host_lock_wait_ms for the lock, else hands the change to the outbox;
// what it has not finished when this process goes on it finishes alone.
void make_from_host(struct mailsuspend_handle* ms, const OutboxEntry& entry,
                    const std::function<void(std::unique_ptr<StoreWriter>&)>& make) {
    const Detached d = run_detached(ms->cfg.host_write_wait_ms, [&] {
        if (auto writer = open_writer(ms, entry)) make(writer);
    });
    if (d == Detached::not_started) hand_on(ms, entry, "no process to change the store for " + entry.key);
}

// A crossing of limit: suspend send of key (the message itself is already
// refused), counted as an automatic suspension when this made it.  A change
// handed to the outbox is in force at once (send checks look there).
void suspend_for_rate(struct mailsuspend_handle* ms, const std::string& key, const std::string& why,
                      std::string_view limit, int64_t now) {
    const OutboxEntry entry{OutboxOp::rate_suspend, key, why, now};
    make_from_host(ms, entry, [&](std::unique_ptr<StoreWriter>& writer) {
        std::vector<std::string> warnings;
        AutoSuspension done;
        const Outcome o = suspend_automatically(ms->cfg, *writer, exim_actor(), key, Source::rate, why, now, done,
                                                warnings);
        writer.reset();  // release the writer lock before logging
        log_warnings(ms, warnings);
        if (!o.ok()) return hand_on(ms, entry, "suspending " + key + " failed: " + o.message);
        log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: " + o.message + ": " + why);
        if (const auto cause = metrics::cause_of_limit(limit); cause && done.suspended_now)
            count(ms, metrics::HostClass::exim, metrics::auto_suspension_slot(*cause));
    });
}

// A refused attempt of a rate-suspended sender: extend (limits.extend_on_attempt).
// key: the mailbox, or its domain when that is what the suspension is on.
void extend_if_due(struct mailsuspend_handle* ms, std::string_view key, int64_t now) {
    if (!ms->cfg.limits.extend_on_attempt) return;
    StoreReader* reader = reader_of(ms, now);
    TargetRecord record;
    if (!reader || reader->read(key, record) != LookupStatus::found) return;
    if (!extension_due(ms->cfg, record.at(Service::send), now)) return;
    const OutboxEntry entry{OutboxOp::extend, std::string(key), "", now};
    make_from_host(ms, entry, [&](std::unique_ptr<StoreWriter>& writer) {
        std::vector<std::string> warnings;
        bool extended = false;
        const Outcome o = extend_rate_suspension(ms->cfg, *writer, exim_actor(), entry.key, now, extended, warnings);
        writer.reset();
        log_warnings(ms, warnings);
        if (!o.ok()) hand_on(ms, entry, "extending " + entry.key + " failed: " + o.message);
        else if (extended) log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: " + o.message);
    });
}

// A sender whose recipients' fates a trigger counts (the unknown-recipient
// and failed-share triggers): its mailbox key in key (backed by buf), false
// while its send is suspended (refused already: nothing to count) or when
// the store cannot say.
bool countable_sender(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                      char (&buf)[kKeyBufferSize], std::string_view& key) {
    mailsuspend_result state{};
    mailsuspend_check_send(ms, sender, client_ip, &state);
    if (state.verdict == MAILSUSPEND_DENY || state.fail_policy) return false;
    return key_of(ms, sender, buf, sizeof buf, key) && key.front() != '@';
}

// A trigger's crossing suspends send of the mailbox, or of its domain when
// that crossed (d.domain).  1 when it did (or handed it on), else 0.
int suspend_if_crossed(struct mailsuspend_handle* ms, std::string_view key, const RateDecision& d, int64_t now) {
    if (d.verdict != RateVerdict::crossed) return 0;
    suspend_for_rate(ms, std::string(d.domain ? domain_key_of(key) : key), describe(d, ""), d.limit, now);
    return 1;
}

// The login tables (limits.login_ips_per_day), opened once (a new attempt at
// most once a second while missing; the failure logged once).
bool fleet_counts(const Config& cfg) {
    return cfg.fleet.enabled && cfg.fleet.counters == FleetConfig::Counters::fleet;
}

// fleet.counters = "fleet": where Exim tells the fleet agent whose counts
// changed (<store>/count-log, opened on first use, at most one attempt a
// second).  Without it the node still counts alone; one log line says so.
CountLog* count_log_of(struct mailsuspend_handle* ms, int64_t now) {
    PolicyState& p = ms->policy;
    if (p.count_log && !p.count_log->usable()) p.count_log.reset();
    if (!p.count_log && now >= p.next_count_log_attempt) {
        p.next_count_log_attempt = now + kReopenInterval;
        std::string error;
        p.count_log = CountLog::open(ms->cfg.store_path, false, error);
        if (!p.count_log && !p.count_log_logged)
            log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: fleet counters: " + error +
                                                    "; this node's counts are not shared (run mailsuspend init)");
        p.count_log_logged = !p.count_log;
    }
    return p.count_log.get();
}

bool logins_of(struct mailsuspend_handle* ms, int64_t now, LoginPairs*& pairs, Counters*& counters) {
    PolicyState& p = ms->policy;
    if ((!p.login_pairs || !p.login_counters) && now >= p.next_logins_attempt) {
        p.next_logins_attempt = now + kReopenInterval;
        std::string error;
        if (!p.login_pairs) p.login_pairs = LoginPairs::open(ms->cfg.store_path, false, 0, error);
        if (p.login_pairs && !p.login_counters)
            p.login_counters = Counters::open(ms->cfg.store_path, false, 0, error, Counters::kLoginCountersName);
        if (!error.empty() && !p.logins_logged)
            log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: limits.login_ips_per_day not counted: " + error +
                                                    " (mailsuspend init creates it for store.login_group " +
                                                    ms->cfg.login_group + ")");
        p.logins_logged = p.logins_logged || !error.empty();
    }
    pairs = p.login_pairs.get();
    counters = p.login_counters.get();
    return pairs && counters;
}

constexpr uint8_t kLoginServicesMask = kSendMask | 1u << static_cast<int>(Service::imap) |
                                       1u << static_cast<int>(Service::pop3) |
                                       1u << static_cast<int>(Service::webmail) |
                                       1u << static_cast<int>(Service::webmail_send) |
                                       1u << static_cast<int>(Service::sieve);

void deny_login(struct mailsuspend_handle* ms, Service s, mailsuspend_result* r) {
    r->verdict = MAILSUSPEND_DENY;
    r->service = service_name(s).data();
    r->scope = "mailbox";
    set_text(r, ms->cfg.messages.login_ips, "", false);
}

// The trigger crossed: the suspension goes to the outbox at once.  Dovecot's
// auth process may not take the store's writer lock (store.write_group) and
// must not wait: the next writer (a mailsuspend command, the sweep timer
// within a minute) makes it.
void hand_login_suspension(struct mailsuspend_handle* ms, std::string_view key, const RateDecision& d,
                           const char* client_ip, int64_t now) {
    const bool logins = ms->cfg.limits.login_ips_action == LoginIpsAction::logins;
    OutboxEntry entry{OutboxOp::rate_suspend, std::string(key), describe(d, client_ip), now};
    entry.services = logins ? kLoginServicesMask : kSendMask;
    if (std::string e; !outbox_put(ms->cfg, entry, e, nullptr)) {
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: automatic suspension of " + entry.key + " (" + entry.why +
                                                ") lost: the outbox failed: " + e);
        return;
    }
    log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: " + service_list(entry.services) + " of " + entry.key +
                                           " suspended automatically (handed to the outbox): " + entry.why);
    count(ms, metrics::HostClass::dovecot,
          metrics::auto_suspension_slot(metrics::AutoCause::login_ips_per_day));
}

// A mailbox at its limit whose "logins" suspension still waits in the
// outbox: refused as if the store had it (one stat, only at the limit).
bool login_suspension_pending(struct mailsuspend_handle* ms, Counters* counters, std::string_view key, int64_t now) {
    const Limits& l = ms->cfg.limits;
    return l.login_ips_action == LoginIpsAction::logins &&
           counters->total(key, CounterKind::login_ips, now) >= l.login_ips_per_day &&
           outbox_holds_suspension(ms->cfg, key);
}

void count_login_of(struct mailsuspend_handle* ms, std::string_view key, Service s, const char* client_ip,
                    mailsuspend_result* r) {
    const int64_t now = std::time(nullptr);
    LoginPairs* pairs = nullptr;
    Counters* counters = nullptr;
    if (!logins_of(ms, now, pairs, counters)) return;
    if (login_suspension_pending(ms, counters, key, now)) return deny_login(ms, s, r);
    const RateDecision d = count_login(ms->cfg.limits, pairs, counters, key, client_ip, now);
    if (d.verdict == RateVerdict::unavailable && !ms->policy.logins_logged) {
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: the login pair table is full or unusable: raise "
                                            "store.login_capacity (mailsuspend init makes a new one); "
                                            "logins pass uncounted");
        ms->policy.logins_logged = true;
    }
    if (d.verdict != RateVerdict::crossed) return;
    hand_login_suspension(ms, key, d, client_ip, now);
    if (ms->cfg.limits.login_ips_action == LoginIpsAction::logins) deny_login(ms, s, r);
}

// A refusal of the message: scope, enhanced status and the configured text.
void refuse(mailsuspend_result* r, const char* scope, const char* status, const std::string& text) {
    r->verdict = MAILSUSPEND_DENY;
    r->scope = scope;
    r->status = status;
    set_text(r, text, "", false);
}

}  // namespace

extern "C" {

void mailsuspend_count_message(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                               const char* const* recipients, unsigned recipient_count,
                               struct mailsuspend_result* r) {
    if (!r) return;
    if (!ms) return reset(r, "send");
    mailsuspend_check_send(ms, sender, client_ip, r);
    metrics::SendRefusal refusal = metrics::SendRefusal::suspended;
    guarded(r, [&] {
        if (!ms->cfg_ok || r->fail_policy) return;
        char buf[kKeyBufferSize];
        std::string_view key;
        if (!key_of(ms, sender, buf, sizeof buf, key) || key.front() == '@') return;
        const int64_t now = std::time(nullptr);
        if (r->verdict == MAILSUSPEND_DENY)
            return extend_if_due(ms, std::strcmp(r->scope, "domain") == 0 ? domain_key_of(key) : key, now);
        // Opened even by a call without recipients, so a host can open the
        // mapping in a parent process (the Exim daemon) for its forks.
        Counters* counters = counters_of(ms, now);
        if (fleet_counts(ms->cfg) && (recipient_count == 0 || !recipients)) count_log_of(ms, now);
        if (recipient_count == 0 || !recipients) return;
        uint32_t offdomain = 0;
        for (unsigned i = 0; i < recipient_count; ++i)
            if (recipients[i] && is_offdomain(key, recipients[i], ms->cfg.address)) ++offdomain;
        MessageFacts facts;
        facts.sender = key;
        if (client_ip && *client_ip && !ms->cfg.is_webmail_host(client_ip)) facts.client_ip = client_ip;
        facts.recipients = recipient_count;
        facts.offdomain = offdomain;
        facts.fleet_shares = fleet_counts(ms->cfg);
        const RateDecision d = count_message(ms->cfg.limits, counters, facts, now);
        switch (d.verdict) {
            case RateVerdict::allow:
                if (CountLog* log = facts.fleet_shares ? count_log_of(ms, now) : nullptr)
                    log->append(facts.sender, facts.client_ip);
                return;
            case RateVerdict::unavailable:
                if (ms->policy.counters && !ms->policy.counters->usable()) {
                    // Truncated or overwritten under the mapping: counted
                    // nothing; drop it and reopen at the next message.
                    if (!ms->policy.counters_logged)
                        log_line(ms, MAILSUSPEND_LOG_ERROR,
                                 "mailsuspend: rate limits not counted: " + ms->cfg.store_path +
                                     "/counters became unusable (truncated or overwritten in place?); "
                                     "messages pass uncounted until a whole file is in place");
                    ms->policy.counters_logged = true;
                    ms->policy.counters.reset();
                    ms->policy.next_counters_attempt = now + kReopenInterval;
                    return;
                }
                if (ms->policy.counters && !ms->policy.counters_logged) {
                    log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: the counter table is full: raise "
                                                        "store.counter_capacity; messages pass uncounted");
                    ms->policy.counters_logged = true;
                }
                return;
            case RateVerdict::too_many_recipients:
                refusal = metrics::SendRefusal::recipients_per_message;
                refuse(r, "mailbox", "5.5.3", ms->cfg.messages.recipients_per_message);  // RFC 3463
                return;
            case RateVerdict::ip_throttled:
                refusal = metrics::SendRefusal::ip_throttled;
                // Temporary: the client retries once the IP's hour has room; a
                // mailbox that keeps sending still meets its own limits.
                refuse(r, "ip", "4.7.1", ms->cfg.messages.ip_throttled);
                log_line(ms, MAILSUSPEND_LOG_INFO,
                         "mailsuspend: client IP throttled, nobody suspended: " + describe(d, facts.client_ip));
                return;
            case RateVerdict::crossed:
                refusal = metrics::SendRefusal::rate_limit;
                refuse(r, d.domain ? "domain" : "mailbox", "5.7.13", text_of_limit(ms->cfg.messages, d.limit));
                r->hold = ms->cfg.limits.action == SendAction::hold;  // this message too
                suspend_for_rate(ms, std::string(d.domain ? domain_key_of(key) : key), describe(d, facts.client_ip),
                                 d.limit, now);
                return;
        }
    });
    // Each refused MAIL FROM or DATA: Exim calls this once for each.
    if (r->verdict == MAILSUSPEND_DENY && !is_probe(sender)) {
        if (r->fail_policy) refusal = metrics::SendRefusal::fail_policy;
        count(ms, metrics::HostClass::exim, metrics::kSendRefused + static_cast<int>(refusal));
    }
}

int mailsuspend_count_unknown_recipient(struct mailsuspend_handle* ms, const char* sender, const char* client_ip) {
    if (!ms || !ms->cfg_ok || ms->cfg.limits.unknown_recipients_per_hour <= 0) return 0;
    try {
        char buf[kKeyBufferSize];
        std::string_view key;
        if (!countable_sender(ms, sender, client_ip, buf, key)) return 0;
        const int64_t now = std::time(nullptr);
        const RateDecision d = count_unknown_recipient(ms->cfg.limits, counters_of(ms, now), key, now);
        return suspend_if_crossed(ms, key, d, now);
    } catch (...) {
        return 0;
    }
}

int mailsuspend_counts_unknown_recipients(struct mailsuspend_handle* ms) {
    return ms && ms->cfg_ok && ms->cfg.limits.unknown_recipients_per_hour > 0 ? 1 : 0;
}

int mailsuspend_count_delivery_outcome(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                                       const char* recipient, enum mailsuspend_outcome outcome, int first_attempt) {
    if (!ms || !ms->cfg_ok || ms->cfg.limits.failed_share_percent <= 0 || !recipient) return 0;
    try {
        char buf[kKeyBufferSize];
        OutcomeFacts facts;
        if (!countable_sender(ms, sender, client_ip, buf, facts.sender)) return 0;
        facts.recipient = recipient;
        facts.outcome = outcome == MAILSUSPEND_OUTCOME_BOUNCED    ? DeliveryOutcome::bounced
                        : outcome == MAILSUSPEND_OUTCOME_DEFERRED ? DeliveryOutcome::deferred
                                                                  : DeliveryOutcome::delivered;
        facts.first_attempt = first_attempt != 0;
        const int64_t now = std::time(nullptr);
        Counters* counters = counters_of(ms, now);
        const RateDecision d = count_delivery_outcome(ms->cfg.limits, counters, facts, now);
        if (d.verdict == RateVerdict::crossed && !d.domain) take_out_of_domain(*counters, facts.sender, now);
        return suspend_if_crossed(ms, facts.sender, d, now);
    } catch (...) {
        return 0;
    }
}

int mailsuspend_counts_delivery_outcomes(struct mailsuspend_handle* ms) {
    return ms && ms->cfg_ok && ms->cfg.limits.failed_share_percent > 0 ? 1 : 0;
}

void mailsuspend_count_login(struct mailsuspend_handle* ms, const char* user, const char* protocol,
                             const char* client_ip, struct mailsuspend_result* r) {
    if (!r) return;
    reset(r, "none");
    if (!ms || !ms->cfg_ok || ms->cfg.limits.login_ips_per_day <= 0 || !client_ip || !*client_ip) return;
    guarded(r, [&] {
        const std::optional<Service> s = login_service(ms, protocol, client_ip);
        if (!s || *s == Service::webmail) return;  // webmail hosts never count
        char buf[kKeyBufferSize];
        std::string_view key;
        if (!key_of(ms, user, buf, sizeof buf, key) || key.front() == '@') return;
        count_login_of(ms, key, *s, client_ip, r);
    });
}

int mailsuspend_keep_sample(struct mailsuspend_handle* ms, const char* sender, const char* text, size_t len) {
    if (!ms || !ms->cfg_ok || !sender || (!text && len)) return 0;
    try {
        char buf[kKeyBufferSize];
        std::string_view key;
        if (!key_of(ms, sender, buf, sizeof buf, key) || key.front() == '@') return 0;
        std::string error;
        const int kept = keep_sample(ms->cfg, key, std::string_view(text ? text : "", len), std::time(nullptr), error);
        if (kept < 0) log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: evidence for " + std::string(key) + ": " + error);
        // The pending notice is not sent from here: a host process runs no
        // child and waits for none; the sweep (every minute) sends it.
        return kept;
    } catch (...) {
        return -1;
    }
}

int mailsuspend_sender_token(struct mailsuspend_handle* ms, const char* account, char* buf, size_t size) {
    if (!ms || !ms->cfg_ok || !account || !buf || size == 0) return -1;
    try {
        buf[0] = '\0';
        PolicyState& p = ms->policy;
        const int64_t now = std::time(nullptr);
        if (!p.token_key && now >= p.next_key_attempt) {
            p.next_key_attempt = now + kReopenInterval;
            std::string error;
            p.token_key = load_token_key(ms->cfg.store_path, error);
            if (!p.token_key && !p.key_logged) {
                log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: no sender tokens: " + error);
                p.key_logged = true;
            }
        }
        if (!p.token_key) return -1;
        char key_buf[kKeyBufferSize];
        std::string_view key;
        if (!key_of(ms, account, key_buf, sizeof key_buf, key) || key.front() == '@') return -1;
        const std::size_t n = seal_token(*p.token_key, key, now, buf, size);
        return n == 0 ? -1 : static_cast<int>(n);
    } catch (...) {
        return -1;
    }
}

const char* mailsuspend_held_mark(void) { return kHeldMark.data(); }

void mailsuspend_check_held(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                            long message_age, struct mailsuspend_result* r) {
    if (!r) return;
    if (!ms) return reset(r, "send");
    mailsuspend_check_send(ms, sender, client_ip, r);
    if (r->verdict != MAILSUSPEND_DENY) return;
    // Held past the queue's expiry, like mail queued for a suspended recipient.
    r->mode = message_age > ms->cfg.queue_expiry ? MAILSUSPEND_MODE_EXPIRED : MAILSUSPEND_MODE_QUEUE;
}

}  // extern "C"
