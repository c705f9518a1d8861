// The C API over the core: every decision a mail host asks for is made here,
// from the store and the config.  Nothing may throw past these functions.
#include "mailsuspend/mailsuspend.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <unistd.h>

#include "address.hpp"
#include "config.hpp"
#include "counters.hpp"
#include "policy.hpp"
#include "store.hpp"
#include "text.hpp"

using namespace mailsuspend;

struct mailsuspend_handle {
    Config cfg;            // built-in defaults when the file could not be read
    bool cfg_ok = false;
    std::string cfg_error;
    std::unique_ptr<StoreReader> reader;
    int64_t next_open_attempt = 0;
    int64_t next_replaced_check = 0;  // when to ask whether the store file was replaced
    bool degraded_logged = false;  // one log line per process while degraded
    mailsuspend_log_func_t* log = nullptr;
    void* log_ctx = nullptr;
    std::string open_error;  // storage for *error_r
    PolicyState policy;      // counters and token key, opened when first needed
};

namespace {

constexpr int64_t kReopenInterval = 1;  // seconds between attempts to open a missing store

void log_line(struct mailsuspend_handle* ms, mailsuspend_log_level level, const std::string& msg) {
    if (ms->log) ms->log(ms->log_ctx, level, sanitise_line(msg, 900).c_str());
}

void reset(mailsuspend_result* r, const char* service) {
    r->verdict = MAILSUSPEND_ALLOW;
    r->mode = MAILSUSPEND_MODE_DELIVER;
    r->service = service;
    r->scope = "none";
    r->fail_policy = 0;
    r->fail_queued = 0;
    r->text[0] = '\0';
}

void set_text(mailsuspend_result* r, const std::string& message, const std::string& reason,
              bool include_reason) {
    std::string text = message;
    if (include_reason && !reason.empty()) text += " (" + reason + ")";
    const std::string clean = sanitise_line(text, MAILSUSPEND_TEXT_MAX - 1);
    std::memcpy(r->text, clean.c_str(), clean.size() + 1);
}

// The reader, opening it when missing (at most once a second).
StoreReader* reader_of(struct mailsuspend_handle* ms, int64_t now) {
    if (ms->reader && now >= ms->next_replaced_check) {
        // A store deleted and initialised again: follow it (once a second at most).
        ms->next_replaced_check = now + kReopenInterval;
        if (ms->reader->replaced()) {
            std::string error;
            ms->reader = StoreReader::open(ms->cfg.store_path, error);
            if (!ms->reader) ms->cfg_error = error;
            ms->next_open_attempt = now + kReopenInterval;
            return ms->reader.get();
        }
    }
    if (ms->reader) return ms->reader.get();
    if (!ms->cfg_ok || now < ms->next_open_attempt) return nullptr;
    ms->next_open_attempt = now + kReopenInterval;
    std::string error;
    ms->reader = StoreReader::open(ms->cfg.store_path, error);
    if (!ms->reader) ms->cfg_error = error;
    return ms->reader.get();
}

// Applies store.fail_policy and logs the first time in a row.
void apply_fail_policy(struct mailsuspend_handle* ms, mailsuspend_result* r, const std::string& why,
                       Service service) {
    const bool closed = ms->cfg.fail_policy == FailPolicy::closed;
    if (!ms->degraded_logged) {
        log_line(ms, MAILSUSPEND_LOG_ERROR,
                 "mailsuspend: store unavailable (" + why + "); fail policy " +
                     (closed ? "closed: refusing" : "open: allowing") + " until it is back");
        ms->degraded_logged = true;
    }
    r->fail_policy = 1;
    r->scope = "none";
    if (!closed) return;
    r->verdict = MAILSUSPEND_DENY;
    // Closed for receiving means hold the mail, never lose it.
    if (service == Service::receive) r->mode = MAILSUSPEND_MODE_QUEUE;
    set_text(r, service == Service::receive ? ms->cfg.messages.receive_rejected
                                            : ms->cfg.messages.suspended,
             "", false);
}

void note_available(struct mailsuspend_handle* ms) {
    if (!ms->degraded_logged) return;
    ms->degraded_logged = false;
    log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: store available again");
}

// The state of one service for one key, as far as the hot view tells.
struct Hit {
    bool in_force = false;
    DeliveryMode mode = DeliveryMode::unset;
    ServiceState state;  // filled only when in force (reason, source, flags)
};

// Looks key up; false when the store is unavailable.  Reads the full record
// (which allocates) only when the service is suspended: a denial, or an
// expiry to check.
bool lookup(StoreReader& reader, std::string_view key, Service service, int64_t now, Hit& hit) {
    HotView view;
    const LookupStatus st = reader.lookup(key, view);
    if (st == LookupStatus::unavailable) return false;
    if (st == LookupStatus::absent) return true;
    hit.mode = view.mode;
    if (!(view.suspended & (1u << static_cast<int>(service)))) return true;
    TargetRecord record;
    const LookupStatus full = reader.read(key, record);
    if (full == LookupStatus::unavailable) return false;
    if (full == LookupStatus::absent) return true;  // erased between the two reads
    hit.in_force = record.at(service).in_force(now);
    if (hit.in_force) hit.state = record.at(service);
    return true;
}

struct Effective {
    bool in_force = false;
    Scope scope = Scope::none;
    ServiceState state;
    DeliveryMode mode = DeliveryMode::unset;
};

// Mailbox state united with its domain's; false when the store is unavailable.
bool effective_state(struct mailsuspend_handle* ms, std::string_view key, Service service, int64_t now,
                     Effective& out, std::string& why) {
    StoreReader* reader = reader_of(ms, now);
    if (!reader) {
        why = ms->cfg_ok ? ms->cfg_error : "config: " + ms->cfg_error;
        return false;
    }
    Hit mailbox, domain;
    const std::string_view domain_key = domain_key_of(key);
    const bool is_mailbox = key.front() != '@';
    if ((is_mailbox && !lookup(*reader, key, service, now, mailbox)) ||
        !lookup(*reader, domain_key, service, now, domain)) {
        why = reader->last_error();
        return false;
    }
    out.mode = mailbox.mode != DeliveryMode::unset ? mailbox.mode : domain.mode;
    if (mailbox.in_force) {
        out = {true, Scope::mailbox, mailbox.state, out.mode};
    } else if (domain.in_force) {
        out = {true, Scope::domain, domain.state, out.mode};
    }
    return true;
}

// Normalises into buf; false (allow: such a name cannot be suspended) when invalid.
bool key_of(struct mailsuspend_handle* ms, const char* address, char* buf, std::size_t size,
            std::string_view& key) {
    if (!address) return false;
    const std::size_t n = normalise(address, ms->cfg.address, buf, size, nullptr, nullptr);
    key = std::string_view(buf, n);
    return n > 0;
}

// The shared path of every check: normalise, look up, fill the result.
bool check(struct mailsuspend_handle* ms, const char* address, Service service, mailsuspend_result* r,
           Effective& e) {
    char buf[kKeyBufferSize];
    std::string_view key;
    if (!ms->cfg_ok) {
        apply_fail_policy(ms, r, "config: " + ms->cfg_error, service);
        return false;
    }
    if (!key_of(ms, address, buf, sizeof buf, key)) return false;
    std::string why;
    if (!effective_state(ms, key, service, std::time(nullptr), e, why)) {
        apply_fail_policy(ms, r, why, service);
        return false;
    }
    note_available(ms);
    if (!e.in_force) return false;
    r->verdict = MAILSUSPEND_DENY;
    r->scope = scope_name(e.scope).data();
    return true;
}

// A NULL result or handle (mailsuspend_open out of memory): never a crash.
// Without a handle there is no config: the built-in policy, open, decides.
bool usable(struct mailsuspend_handle* ms, mailsuspend_result* r, const char* service) {
    if (!r) return false;
    reset(r, service);
    if (ms) return true;
    r->fail_policy = 1;
    return false;
}

const char* static_service_name(Service s) { return service_name(s).data(); }

template <typename F>
void guarded(mailsuspend_result* r, F&& body) {
    try {
        body();
    } catch (...) {  // e.g. std::bad_alloc: never past the C boundary
        r->verdict = MAILSUSPEND_ALLOW;
        r->fail_policy = 1;
    }
}

}  // namespace

extern "C" {

struct mailsuspend_handle* mailsuspend_open(const char* config_path, mailsuspend_log_func_t* log,
                                     void* log_ctx, const char** error_r) {
    auto* ms = new (std::nothrow) struct mailsuspend_handle;
    if (!ms) return nullptr;
    try {
        ms->log = log;
        ms->log_ctx = log_ctx;
        const std::string path = config_path && *config_path ? config_path : MAILSUSPEND_DEFAULT_CONFIG;
        auto cfg = load_config(path, ms->cfg_error);
        if (cfg) {
            ms->cfg = std::move(*cfg);
            ms->cfg_ok = true;
            ms->reader = StoreReader::open(ms->cfg.store_path, ms->cfg_error);
            ms->next_open_attempt = std::time(nullptr) + kReopenInterval;
            ms->next_replaced_check = ms->next_open_attempt;
        }
        if (!ms->cfg_ok) ms->open_error = "mailsuspend: config " + ms->cfg_error;
        else if (!ms->reader) ms->open_error = "mailsuspend: store " + ms->cfg_error;
    } catch (...) {
        ms->open_error = "mailsuspend: out of memory while opening";
    }
    if (error_r) *error_r = ms->open_error.empty() ? nullptr : ms->open_error.c_str();
    return ms;
}

void mailsuspend_close(struct mailsuspend_handle** ms) {
    if (!ms || !*ms) return;
    delete *ms;
    *ms = nullptr;
}

void mailsuspend_check_service(struct mailsuspend_handle* ms, const char* user, const char* service,
                               const char* client_ip, struct mailsuspend_result* r) {
    (void)client_ip;
    if (!usable(ms, r, "none")) return;
    guarded(r, [&] {
        const auto s = service ? parse_service(service) : std::nullopt;
        if (!s) return;
        r->service = static_service_name(*s);
        Effective e;
        if (check(ms, user, *s, r, e))
            set_text(r, ms->cfg.messages.login_denied, e.state.reason, ms->cfg.messages.include_reason);
    });
}

void mailsuspend_check_login(struct mailsuspend_handle* ms, const char* user, const char* protocol,
                             const char* client_ip, struct mailsuspend_result* r) {
    if (!usable(ms, r, "none")) return;
    guarded(r, [&] {
        if (!protocol) return;
        std::optional<Service> s;
        const std::string_view p = protocol;
        if (p == "imap" || p == "pop3")  // webmail logs in over IMAP/POP3 from its own host
            s = ms->cfg.is_webmail_host(client_ip) ? Service::webmail : *parse_service(p);
        else if (p == "sieve")
            s = Service::sieve;
        if (!s) return;  // lmtp, lda, doveadm...: never refused here
        r->service = static_service_name(*s);
        Effective e;
        if (check(ms, user, *s, r, e))
            set_text(r, ms->cfg.messages.login_denied, e.state.reason, ms->cfg.messages.include_reason);
    });
}

void mailsuspend_check_send(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                            struct mailsuspend_result* r) {
    if (!usable(ms, r, "send")) return;
    guarded(r, [&] {
        Effective e;
        bool denied = check(ms, sender, Service::send, r, e);
        if (!denied && !r->fail_policy && ms->cfg.is_webmail_host(client_ip)) {
            r->service = "webmail_send";
            denied = check(ms, sender, Service::webmail_send, r, e);
        }
        if (!denied) return;
        const bool automatic = e.state.source == Source::rate || e.state.source == Source::spam;
        set_text(r, automatic ? ms->cfg.messages.rate_suspended : ms->cfg.messages.send_suspended,
                 automatic ? "" : e.state.reason, ms->cfg.messages.include_reason);
        r->fail_queued = e.state.fail_queued;
    });
}

void mailsuspend_check_receive(struct mailsuspend_handle* ms, const char* recipient, long message_age,
                               struct mailsuspend_result* r) {
    if (!usable(ms, r, "receive")) return;
    guarded(r, [&] {
        Effective e;
        if (!check(ms, recipient, Service::receive, r, e)) return;
        const DeliveryMode mode = e.mode != DeliveryMode::unset ? e.mode : ms->cfg.default_mode;
        switch (mode) {
            case DeliveryMode::discard: r->mode = MAILSUSPEND_MODE_DISCARD; break;
            case DeliveryMode::reject: r->mode = MAILSUSPEND_MODE_REJECT; break;
            case DeliveryMode::queue:
                r->mode = message_age >= ms->cfg.queue_expiry ? MAILSUSPEND_MODE_EXPIRED
                                                              : MAILSUSPEND_MODE_QUEUE;
                break;
            default: r->mode = MAILSUSPEND_MODE_DELIVER; break;
        }
        set_text(r, ms->cfg.messages.receive_rejected, e.state.reason, false);
    });
}

int mailsuspend_is_webmail_host(struct mailsuspend_handle* ms, const char* client_ip) {
    if (!ms || !ms->cfg_ok || !client_ip) return 0;
    try {
        return ms->cfg.is_webmail_host(client_ip) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

int mailsuspend_message(struct mailsuspend_handle* ms, const char* key, char* buf, size_t size) {
    if (!ms || !key || !buf || size == 0) return -1;
    const Messages& m = ms->cfg.messages;
    const std::pair<const char*, const std::string*> table[] = {
        {"suspended", &m.suspended},           {"send_suspended", &m.send_suspended},
        {"rate_suspended", &m.rate_suspended}, {"receive_rejected", &m.receive_rejected},
        {"login_denied", &m.login_denied},     {"recipients_per_message", &m.recipients_per_message}};
    for (const auto& [name, text] : table) {
        if (std::strcmp(name, key) != 0) continue;
        std::snprintf(buf, size, "%s", text->c_str());
        return 0;
    }
    return -1;
}

}  // extern "C"

// ---- Automatic suspension policies (issue 5): rules in policy.cpp ----------

namespace {

// The counters file, opened on first use (at most one attempt a second).
Counters* counters_of(struct mailsuspend_handle* ms, int64_t now) {
    PolicyState& p = ms->policy;
    if (p.counters) return p.counters.get();
    if (now < p.next_counters_attempt) return nullptr;
    p.next_counters_attempt = now + kReopenInterval;
    std::string error;
    p.counters = Counters::open(ms->cfg.store_path, false, 0, error);
    if (!p.counters && !p.counters_logged) {
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: rate limits not counted: " + error);
        p.counters_logged = true;
    }
    return p.counters.get();
}

Actor exim_actor() {
    Actor a;
    a.uid = ::getuid();
    a.name = "exim";
    return a;
}

void log_warnings(struct mailsuspend_handle* ms, const std::vector<std::string>& warnings) {
    for (const auto& w : warnings) log_line(ms, MAILSUSPEND_LOG_WARNING, "mailsuspend: " + w);
}

std::unique_ptr<StoreWriter> open_writer(struct mailsuspend_handle* ms, const std::string& key) {
    std::string error;
    auto writer = StoreWriter::open(ms->cfg, false, error);
    if (!writer)
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: cannot change the store for " + key + ": " + error);
    return writer;
}

// A crossing: suspend send of key (the message itself is already refused).
void suspend_for_rate(struct mailsuspend_handle* ms, const std::string& key, const std::string& why, int64_t now) {
    auto writer = open_writer(ms, key);
    if (!writer) return;
    std::vector<std::string> warnings;
    AutoSuspension done;
    const Outcome o = suspend_automatically(ms->cfg, *writer, exim_actor(), key, Source::rate, why, now, done, warnings);
    writer.reset();  // release the writer lock before logging
    log_warnings(ms, warnings);
    log_line(ms, o.ok() ? MAILSUSPEND_LOG_INFO : MAILSUSPEND_LOG_ERROR,
             "mailsuspend: " + (o.ok() ? o.message + ": " + why : "suspending " + key + " failed: " + o.message));
}

// A refused attempt of a rate-suspended sender: extend (limits.extend_on_attempt).
void extend_if_due(struct mailsuspend_handle* ms, std::string_view key, int64_t now) {
    if (!ms->cfg.limits.extend_on_attempt) return;
    StoreReader* reader = reader_of(ms, now);
    TargetRecord record;
    if (!reader || reader->read(key, record) != LookupStatus::found) return;
    if (!extension_due(ms->cfg, record.at(Service::send), now)) return;
    const std::string k(key);
    auto writer = open_writer(ms, k);
    if (!writer) return;
    std::vector<std::string> warnings;
    bool extended = false;
    const Outcome o = extend_rate_suspension(ms->cfg, *writer, exim_actor(), k, now, extended, warnings);
    writer.reset();
    log_warnings(ms, warnings);
    if (!o.ok()) log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: " + o.message);
    else if (extended) log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: " + o.message);
}

}  // namespace

extern "C" {

void mailsuspend_count_message(struct mailsuspend_handle* ms, const char* sender, const char* client_ip,
                               const char* const* recipients, unsigned recipient_count,
                               struct mailsuspend_result* r) {
    if (!r) return;
    if (!ms) return reset(r, "send");
    mailsuspend_check_send(ms, sender, client_ip, r);
    guarded(r, [&] {
        if (!ms->cfg_ok || r->fail_policy) return;
        char buf[kKeyBufferSize];
        std::string_view key;
        if (!key_of(ms, sender, buf, sizeof buf, key) || key.front() == '@') return;
        const int64_t now = std::time(nullptr);
        if (r->verdict == MAILSUSPEND_DENY) return extend_if_due(ms, key, now);
        if (recipient_count == 0 || !recipients) return;
        uint32_t offdomain = 0;
        for (unsigned i = 0; i < recipient_count; ++i)
            if (recipients[i] && is_offdomain(key, recipients[i], ms->cfg.address)) ++offdomain;
        MessageFacts facts;
        facts.sender = key;
        if (client_ip && *client_ip && !ms->cfg.is_webmail_host(client_ip)) facts.client_ip = client_ip;
        facts.recipients = recipient_count;
        facts.offdomain = offdomain;
        const RateDecision d = count_message(ms->cfg.limits, counters_of(ms, now), facts, now);
        switch (d.verdict) {
            case RateVerdict::allow:
                return;
            case RateVerdict::unavailable:
                if (ms->policy.counters && !ms->policy.counters_logged) {
                    log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: the counter table is full: raise "
                                                        "store.counter_capacity; messages pass uncounted");
                    ms->policy.counters_logged = true;
                }
                return;
            case RateVerdict::too_many_recipients:
                r->verdict = MAILSUSPEND_DENY;
                r->scope = "mailbox";
                set_text(r, ms->cfg.messages.recipients_per_message, "", false);
                return;
            case RateVerdict::crossed:
                r->verdict = MAILSUSPEND_DENY;
                r->scope = "mailbox";
                set_text(r, ms->cfg.messages.rate_suspended, "", false);
                suspend_for_rate(ms, std::string(key), describe(d, facts.client_ip), now);
                return;
        }
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
        std::vector<std::string> warnings;
        if (send_pending_notices(ms->cfg, key, warnings) > 0)
            log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: AUP notice sent for " + std::string(key));
        log_warnings(ms, warnings);
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

}  // extern "C"
