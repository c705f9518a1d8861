// The C API over the core: every decision a mail host asks for is made here,
// from the store and the config.  Nothing may throw past these functions.
#include "mailsuspend/mailsuspend.h"

#include <cstdio>
#include <cstring>
#include <strings.h>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <unistd.h>

#include "address.hpp"
#include "bus_guard.hpp"
#include "capi_internal.hpp"
#include "config.hpp"
#include "config_snapshot.hpp"
#include "ms_light.h"
#include "outbox.hpp"
#include "store.hpp"
#include "text.hpp"

using namespace mailsuspend;


namespace mailsuspend::capi {

void log_line(struct mailsuspend_handle* ms, mailsuspend_log_level level, const std::string& msg) {
    if (ms->log) ms->log(ms->log_ctx, level, sanitise_line(msg, 900).c_str());
}

namespace {

// Appends text to the reply from octet n on, cleaned by sanitise_line's
// rules, as far as the reply has room.  Printable ASCII (nearly every
// message and reason) is copied as it is, without allocating.
void append_clean(mailsuspend_result* r, std::size_t& n, std::string_view text) {
    const std::size_t room = MAILSUSPEND_TEXT_MAX - 1 - n;
    const std::size_t plain = printable_ascii_prefix(text, room);
    if (plain < text.size() && plain < room) {
        const std::string clean = sanitise_line(text, room);
        std::memcpy(r->text + n, clean.data(), clean.size());
        n += clean.size();
        return;
    }
    std::memcpy(r->text + n, text.data(), plain);
    n += plain;
}

// Appends text that needs no cleaning, as far as the reply has room.
void append_as_is(mailsuspend_result* r, std::size_t& n, std::string_view text) {
    const std::size_t k = std::min(text.size(), MAILSUSPEND_TEXT_MAX - 1 - n);
    std::memcpy(r->text + n, text.data(), k);
    n += k;
}

}  // namespace

static_assert(kMaxMessageText < MAILSUSPEND_TEXT_MAX, "a configured message fits a reply");

void set_text(mailsuspend_result* r, const std::string& message, const std::string& reason,
              bool include_reason) {
    std::size_t n = 0;
    append_as_is(r, n, message);  // a configured message: checked when the config was read
    if (include_reason && !reason.empty()) {
        append_as_is(r, n, " (");
        append_clean(r, n, reason);
        append_as_is(r, n, ")");
    }
    r->text[n] = '\0';
}

// The enhanced status code an SMTP host replies with when service is refused.
const char* smtp_status(Service service) {
    switch (service) {
        case Service::send:
        case Service::webmail_send: return "5.7.13";  // RFC 7372: user account disabled
        case Service::receive: return "5.2.1";        // mailbox disabled
        default: return "";
    }
}

metrics::Writer* metrics_of(struct mailsuspend_handle* ms, metrics::HostClass c) {
    const int i = static_cast<int>(c);
    if (ms->metrics[i]) return ms->metrics[i].get();
    const int64_t now = std::time(nullptr);
    if (now < ms->next_metrics_attempt[i]) return nullptr;
    ms->next_metrics_attempt[i] = now + kMetricsRetryInterval;
    std::string error;
    ms->metrics[i] = metrics::Writer::open(metrics::path_of(ms->cfg.store_path, c), error);
    // Logged once, and only while the store itself is readable: a missing
    // store already has its line (the fail policy's), one is enough.
    if (!ms->metrics[i] && !ms->metrics_logged[i] && ms->reader) {
        log_line(ms, MAILSUSPEND_LOG_WARNING, "mailsuspend: events not counted for metrics: " + error);
        ms->metrics_logged[i] = true;
    }
    return ms->metrics[i].get();
}

void count(struct mailsuspend_handle* ms, metrics::HostClass c, int slot) {
    if (metrics::Writer* w = metrics_of(ms, c)) w->add(slot);
}

metrics::HostClass class_of(Service service) {
    switch (service) {
        case Service::send:
        case Service::webmail_send:
        case Service::receive: return metrics::HostClass::exim;
        default: return metrics::HostClass::dovecot;
    }
}

bool is_probe(const char* address) {
    static constexpr char kTld[] = ".invalid";
    const std::size_t n = address ? std::strlen(address) : 0, t = sizeof kTld - 1;
    return n >= t && ::strncasecmp(address + n - t, kTld, t) == 0;
}

StoreReader* reader_reopened(struct mailsuspend_handle* ms, int64_t now) {
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

// Like the store's reader, the counters file follows a file replaced, truncated or damaged
// in place (checked at most once a second): the mapping is dropped and the
// file opened afresh, so a good file renamed into place counts again
// without restarting the host.
Counters* counters_of(struct mailsuspend_handle* ms, int64_t now) {
    PolicyState& p = ms->policy;
    if (p.counters && now >= p.next_counters_check) {
        p.next_counters_check = now + kReopenInterval;
        if (p.counters->replaced() || !p.counters->usable()) {
            p.counters.reset();
            p.next_counters_attempt = 0;
        }
    }
    if (p.counters) return p.counters.get();
    if (now < p.next_counters_attempt) return nullptr;
    p.next_counters_attempt = now + kReopenInterval;
    std::string error;
    p.counters = Counters::open(ms->cfg.store_path, false, 0, error);
    if (!p.counters && !p.counters_logged) {
        log_line(ms, MAILSUSPEND_LOG_ERROR, "mailsuspend: rate limits not counted: " + error);
        p.counters_logged = true;
    }
    if (p.counters) {
        if (p.counters_logged)
            log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: rate limits counted again (" +
                                                   ms->cfg.store_path + "/counters reopened)");
        p.counters_logged = false;
        p.next_counters_check = now + kReopenInterval;
    }
    return p.counters.get();
}

// Applies store.fail_policy and logs it once per process and outage.  A
// whole-store outage logs again when it ends; one unreadable record (a slot a
// dead writer left locked, until the next writer repairs it) logs once and
// never flaps with the lookups of other keys that succeed meanwhile.
void apply_fail_policy(struct mailsuspend_handle* ms, mailsuspend_result* r, const std::string& why,
                       Service service, bool whole_store, bool probe) {
    const bool closed = ms->cfg.fail_policy == FailPolicy::closed;
    bool& logged = whole_store ? ms->degraded_logged : ms->record_outage_logged;
    if (!logged) {
        log_line(ms, MAILSUSPEND_LOG_ERROR,
                 "mailsuspend: store unavailable (" + why + "); fail policy " +
                     (closed ? "closed: refusing" : "open: allowing") + " until it is back");
        logged = true;
    }
    r->fail_policy = 1;
    r->scope = "none";
    if (!probe) count(ms, class_of(service), metrics::kFailPolicy + (closed ? 1 : 0));
    if (!closed) return;
    r->verdict = MAILSUSPEND_DENY;
    r->status = smtp_status(service);
    // Closed for receiving means hold the mail, never lose it.
    if (service == Service::receive) r->mode = MAILSUSPEND_MODE_QUEUE;
    set_text(r, service == Service::receive ? ms->cfg.messages.receive_rejected
                                            : ms->cfg.messages.unavailable,
             "", false);
}

void note_available(struct mailsuspend_handle* ms) {
    if (!ms->degraded_logged) return;
    ms->degraded_logged = false;
    log_line(ms, MAILSUSPEND_LOG_INFO, "mailsuspend: store available again");
}

// Looks key up into record; false when the store is unavailable.  The hot
// view gives the mode and which services are suspended; the full record
// (which allocates) is read only when service is suspended: a denial, or an
// expiry to check.  An absent key leaves record empty.
// A key's slot as a lookup found it (absent: no record).
struct Hot {
    LookupStatus status = LookupStatus::absent;
    HotView view;
    bool flags(Service s) const {
        return status == LookupStatus::found && (view.suspended & (1u << static_cast<int>(s)));
    }
    DeliveryMode mode() const { return status == LookupStatus::found ? view.mode : DeliveryMode::unset; }
};

// The record of a key whose slot flags service: that service's state, read
// from its blob, and the mode.  false when the store is unavailable.
// (record is as constructed; the read decodes that service's state and the
// mode straight into it, no other service.)
bool complete(StoreReader& reader, std::string_view key, const Hot& hot, Service service, TargetRecord& record) {
    record.mode = hot.mode();
    if (!hot.flags(service)) return true;
    // absent: erased between the two reads, record untouched.
    return reader.read(key, record, static_cast<int>(service)) != LookupStatus::unavailable;
}

// What is in force for one service of one address, and its delivery mode.
struct Effective {
    EffectiveService service;  // scope none: nothing in force
    DeliveryMode mode = DeliveryMode::unset;
};

// The state of k's key (a mailbox's or a domain's) united with its domain's
// by the model's precedence (effective(), the one `status` uses) into out,
// which is as constructed (nothing in force); false when the store is
// unavailable.
bool effective_state(struct mailsuspend_handle* ms, const KeyView& k, Service service, int64_t now,
                     Effective& out, std::string& error_r) {
    StoreReader* reader = reader_of(ms, now);
    if (!reader) {
        error_r = ms->cfg_ok ? ms->cfg_error : "config: " + ms->cfg_error;
        return false;
    }
    const std::string_view key = k.key, domain_key = k.domain;
    const bool is_mailbox = key.front() != '@';
    Hot own_hot, domain_hot;
    if (is_mailbox)
        reader->lookup_pair(domain_key, key, domain_hot.view, own_hot.view, domain_hot.status, own_hot.status);
    else
        domain_hot.status = reader->lookup(domain_key, domain_hot.view);
    if (own_hot.status == LookupStatus::unavailable || domain_hot.status == LookupStatus::unavailable) {
        error_r = reader->last_error();
        return false;
    }
    // The common case, neither slot flags the service: nothing is in force
    // (effective() unites flagged states only), and no record is read.
    if (!own_hot.flags(service) && !domain_hot.flags(service)) {
        out.mode = effective_mode(own_hot.mode(), domain_hot.mode(), ms->cfg.default_mode);
        return true;
    }
    TargetRecord mailbox, domain;
    if ((is_mailbox && !complete(*reader, key, own_hot, service, mailbox)) ||
        !complete(*reader, domain_key, domain_hot, service, domain)) {
        error_r = reader->last_error();
        return false;
    }
    const TargetRecord* own = is_mailbox ? &mailbox : nullptr;
    out.service = effective(own, &domain, service, now);
    out.mode = effective_mode(own, &domain, ms->cfg.default_mode);
    return true;
}

// The key a check looks up, and its domain key.  A local part that is no
// key even after unquoting and dropping the tag (a space or special in the
// base, more than 64 octets of base) names no mailbox of the store, which
// cannot hold such a name: its domain's state decides (README,
// "Addresses").  false only when neither the mailbox nor the domain can be
// a key.
bool check_key_of(struct mailsuspend_handle* ms, const char* address, char* buf, std::size_t size, KeyView& k) {
    if (!address) return false;
    k = normalise_key(address, ms->cfg.address, buf, size);
    if (!k.key.empty()) return true;
    const char* at = std::strrchr(address, '@');
    if (at) k = normalise_key(at, ms->cfg.address, buf, size);
    return !k.key.empty();
}

// The shared path of every check: normalise, look up, fill the result.
bool check(struct mailsuspend_handle* ms, const char* address, Service service, mailsuspend_result* r,
           Effective& e) {
    char buf[kKeyBufferSize];
    KeyView key;
    if (!ms->cfg_ok) {
        apply_fail_policy(ms, r, "config: " + ms->cfg_error, service, true, is_probe(address));
        return false;
    }
    if (!check_key_of(ms, address, buf, sizeof buf, key)) return false;
    std::string why;
    if (!effective_state(ms, key, service, std::time(nullptr), e, why)) {
        apply_fail_policy(ms, r, why, service, !ms->reader || !ms->reader->usable(), is_probe(address));
        return false;
    }
    note_available(ms);
    if (e.service.scope == Scope::none) return false;
    r->verdict = MAILSUSPEND_DENY;
    r->status = smtp_status(service);
    r->scope = scope_name(e.service.scope).data();
    return true;
}

// Where a rate suspension of sender waits in the outbox (outbox.hpp): its
// mailbox's, its domain's (limits.domain_*), or none.
Scope rate_suspension_pending(struct mailsuspend_handle* ms, const char* sender) {
    char buf[kKeyBufferSize];
    std::string_view key;
    if (!key_of(ms, sender, buf, sizeof buf, key) || key.front() == '@') return Scope::none;
    // Nothing counted into the outbox (the common case): no look into it.
    if (const Counters* c = counters_of(ms, std::time(nullptr)); c && c->outbox_suspensions() == 0)
        return Scope::none;
    if (outbox_holds_suspension(ms->cfg, key)) return Scope::mailbox;
    return outbox_holds_suspension(ms->cfg, domain_key_of(key)) ? Scope::domain : Scope::none;
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

// The service a login over protocol is checked as: webmail logs in over
// IMAP/POP3 from its own hosts.  None for protocols never refused here.
std::optional<Service> login_service(struct mailsuspend_handle* ms, const char* protocol, const char* client_ip) {
    if (!protocol) return std::nullopt;
    const std::string_view p = protocol;
    const std::optional<Service> s = p == "imap"    ? Service::imap
                                     : p == "pop3"  ? Service::pop3
                                     : p == "sieve" ? Service::sieve
                                                    : std::optional<Service>{};
    if (s == Service::sieve || !s || ms->cfg.webmail_hosts.empty()) return s;
    return ms->cfg.is_webmail_host(client_ip) ? Service::webmail : s;
}

}  // namespace mailsuspend::capi

using namespace mailsuspend::capi;

extern "C" {

struct mailsuspend_handle* mailsuspend_open(const char* config_path, mailsuspend_log_func_t* log,
                                     void* log_ctx, const char** error_r) {
    // The handle's members allocate in their constructors: nothrow new alone
    // would let bad_alloc out of this C entry point (std::terminate in Exim).
    struct mailsuspend_handle* ms = nullptr;
    try {
        ms = new struct mailsuspend_handle;
    } catch (...) {
        return nullptr;
    }
    try {
        ms->log = log;
        ms->log_ctx = log_ctx;
        const std::string path = config_path && *config_path ? config_path : MAILSUSPEND_DEFAULT_CONFIG;
        auto cfg = load_config_snapshot(path, MAILSUSPEND_SNAPSHOT_DIR, ms->cfg_error);
        if (cfg) {
            ms->cfg = std::move(*cfg);
            ms->cfg_ok = true;
            ms->reader = StoreReader::open(ms->cfg.store_path, ms->cfg_error);
            ms->next_open_attempt = std::time(nullptr) + kReopenInterval;
            ms->next_replaced_check = ms->next_open_attempt;
        }
        if (!ms->cfg_ok) ms->open_error = "mailsuspend: config " + ms->cfg_error;
        else if (!ms->reader) ms->open_error = "mailsuspend: store " + ms->cfg_error;
        // Hosts log error_r as it is, like the logger's lines: one printable line
        // (the store error quotes store.path, which may hold any byte).
        ms->open_error = sanitise_line(ms->open_error, 900);
    } catch (...) {
        try {
            ms->open_error = "mailsuspend: out of memory while opening";
        } catch (...) {
        }
    }
    if (error_r) *error_r = ms->open_error.empty() ? nullptr : ms->open_error.c_str();
    return ms;
}

void mailsuspend_close(struct mailsuspend_handle** ms) {
    if (!ms || !*ms) return;
    delete *ms;
    *ms = nullptr;
}

unsigned long long mailsuspend_change_stamp(struct mailsuspend_handle* ms) {
    if (!ms || !ms->reader) return 0;
    return ms->reader->change_stamp();
}

const char* mailsuspend_notify_path(struct mailsuspend_handle* ms) {
    if (!ms) return nullptr;
    try {
        if (ms->notify_path.empty()) ms->notify_path = mailsuspend::notify_file_path(ms->cfg.store_path);
    } catch (...) {
        return nullptr;
    }
    return ms->notify_path.c_str();
}

}  // extern "C"

namespace {
// The reply to a denied login: an automatic suspension (limits.login_ips_per_day,
// action "logins") names its limit, never its reason; an admin's may add the reason.
void set_login_text(struct mailsuspend_handle* ms, const Effective& e, mailsuspend_result* r) {
    if (e.service.state.source == Source::rate)
        set_text(r, automatic_text(ms->cfg.messages, e.service.state.reason), "", false);
    else
        set_text(r, ms->cfg.messages.login_denied, e.service.state.reason, ms->cfg.messages.include_reason);
}
}  // namespace

extern "C" {

void mailsuspend_check_service(struct mailsuspend_handle* ms, const char* user, const char* service,
                               const char* client_ip, struct mailsuspend_result* r) {
    (void)client_ip;
    if (!usable(ms, r, "none")) return;
    guarded(r, [&] {
        const auto s = service ? parse_service(service) : std::nullopt;
        if (!s) return;
        r->service = static_service_name(*s);
        Effective e;
        if (check(ms, user, *s, r, e)) set_login_text(ms, e, r);
    });
}

void mailsuspend_check_login(struct mailsuspend_handle* ms, const char* user, const char* protocol,
                             const char* client_ip, struct mailsuspend_result* r) {
    if (!usable(ms, r, "none")) return;
    guarded(r, [&] {
        const std::optional<Service> s = login_service(ms, protocol, client_ip);
        if (!s) return;  // lmtp, lda, doveadm...: never refused here
        r->service = static_service_name(*s);
        Effective e;
        if (check(ms, user, *s, r, e)) set_login_text(ms, e, r);
    });
}

int mailsuspend_session_ticket(struct mailsuspend_handle* ms, const char* user, const char* protocol,
                               const char* client_ip, char* buf, size_t size) {
    if (!ms || !ms->cfg_ok || !buf) return 0;
    const std::optional<Service> s = login_service(ms, protocol, client_ip);
    char key_buf[kKeyBufferSize];
    KeyView k;
    if (!s || !check_key_of(ms, user, key_buf, sizeof key_buf, k)) return 0;
    return ms_ticket_format(buf, size, static_cast<ms_service>(*s), k.key.data(), k.key.size(),
                            ms->cfg.store_path.c_str());
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
        const Scope pending = !denied && !r->fail_policy && ms->cfg_ok ? rate_suspension_pending(ms, sender) : Scope::none;
        if (pending != Scope::none) {
            // Decided here (or by another Exim process) while the writer lock
            // was taken: enforced at once, before it reaches the store.
            r->verdict = MAILSUSPEND_DENY;
            r->status = smtp_status(Service::send);
            r->scope = scope_name(pending).data();
            r->hold = ms->cfg.limits.action == SendAction::hold;
            set_text(r, pending == Scope::domain ? ms->cfg.messages.domain_rate_suspended : ms->cfg.messages.rate_suspended,
                     "", false);
            return;
        }
        if (!denied) return;
        const bool automatic = e.service.state.source == Source::rate || e.service.state.source == Source::spam;
        // An automatic suspension says which limit it was (its reason names it), never the reason itself.
        set_text(r, automatic ? automatic_text(ms->cfg.messages, e.service.state.reason) : ms->cfg.messages.send_suspended,
                 automatic ? "" : e.service.state.reason, ms->cfg.messages.include_reason);
        r->fail_queued = e.service.state.fail_queued;
        r->hold = e.service.state.hold;
    });
}

void mailsuspend_check_receive(struct mailsuspend_handle* ms, const char* recipient, long message_age,
                               struct mailsuspend_result* r) {
    if (!usable(ms, r, "receive")) return;
    guarded(r, [&] {
        // Mapped here, at the Exim daemon's preload, so its forks inherit it.
        metrics_of(ms, metrics::HostClass::exim);
        Effective e;
        if (!check(ms, recipient, Service::receive, r, e)) return;
        switch (e.mode) {
            case DeliveryMode::discard: r->mode = MAILSUSPEND_MODE_DISCARD; break;
            case DeliveryMode::reject: r->mode = MAILSUSPEND_MODE_REJECT; break;
            case DeliveryMode::queue:
                r->mode = message_age >= ms->cfg.queue_expiry ? MAILSUSPEND_MODE_EXPIRED
                                                              : MAILSUSPEND_MODE_QUEUE;
                break;
            default: r->mode = MAILSUSPEND_MODE_DELIVER; break;
        }
        set_text(r, ms->cfg.messages.receive_rejected, e.service.state.reason, false);
    });
}

void mailsuspend_count_event(struct mailsuspend_handle* ms, enum mailsuspend_event event, const char* label) {
    if (!ms || !label) return;
    try {
        if (event == MAILSUSPEND_EVENT_RECEIVED) {
            for (int i = 0; i < 5; ++i)
                if (std::strcmp(label, metrics::kReceiveModeNames[i]) == 0)
                    return count(ms, metrics::HostClass::exim, metrics::kReceive + i);
            return;
        }
        const auto service = parse_service(label);
        if (!service) return;
        if (event == MAILSUSPEND_EVENT_LOGIN_DENIED)
            count(ms, metrics::HostClass::dovecot, metrics::kLoginDenied + static_cast<int>(*service));
        else if (event == MAILSUSPEND_EVENT_SESSION_ENDED)
            count(ms, metrics::HostClass::dovecot, metrics::kSessionEnded + static_cast<int>(*service));
    } catch (...) {
    }
}

void mailsuspend_reclaim_sigbus(void) { reclaim_bus_guard(); }

int mailsuspend_is_webmail_host(struct mailsuspend_handle* ms, const char* client_ip) {
    if (!ms || !ms->cfg_ok || !client_ip) return 0;
    try {
        return ms->cfg.is_webmail_host(client_ip) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

const char* mailsuspend_sending_identity(struct mailsuspend_handle* ms, const char* auth_id,
                                         const char* envelope_sender, const char* client_ip) {
    if (auth_id && *auth_id) return auth_id;
    if (!envelope_sender || !*envelope_sender) return nullptr;  // a bounce has no sender to block
    if (!client_ip || !*client_ip) return envelope_sender;      // a local submission
    return mailsuspend_is_webmail_host(ms, client_ip) ? envelope_sender : nullptr;
}

int mailsuspend_message(struct mailsuspend_handle* ms, const char* key, char* buf, size_t size) {
    if (!ms || !key || !buf || size == 0) return -1;
    const Messages& m = ms->cfg.messages;
    const std::pair<const char*, const std::string*> table[] = {
        {"unavailable", &m.unavailable},           {"send_suspended", &m.send_suspended},
        {"rate_suspended", &m.rate_suspended}, {"receive_rejected", &m.receive_rejected},
        {"login_denied", &m.login_denied},     {"recipients_per_message", &m.recipients_per_message},
        {"ip_throttled", &m.ip_throttled},     {"domain_rate_suspended", &m.domain_rate_suspended},
        {"unknown_recipients", &m.unknown_recipients}, {"failed_share", &m.failed_share}};
    for (const auto& [name, text] : table) {
        if (std::strcmp(name, key) != 0) continue;
        std::snprintf(buf, size, "%s", text->c_str());
        return 0;
    }
    return -1;
}

}  // extern "C"

