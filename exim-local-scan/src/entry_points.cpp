// The C entry points Exim calls: local_scan() after DATA (every Exim build)
// and the ${dlfunc} functions for the ACLs and routers (exim4-daemon-heavy).
// Each one catches everything: an exception or crash here would temp-reject
// every message on the host.  Arguments and results: exim-local-scan/README.md.
#define LOCAL_SCAN
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
#include <local_scan.h>
}

#include "exim_host.hpp"
#include "module.hpp"

using namespace mailsuspend_exim;

namespace {

constexpr size_t kReplyMax = MAILSUSPEND_TEXT_MAX + 32;

uschar* reply(const char* prefix, const char* text) noexcept {
    if (!*prefix && !*text) return reinterpret_cast<uschar*>(exim_copy(""));  // the usual answer
    char buffer[kReplyMax];
    std::snprintf(buffer, sizeof buffer, "%s%s", prefix, text);
    return reinterpret_cast<uschar*>(exim_copy(buffer));
}

// "<enhanced status> <text>": the core says which status a refusal carries.
uschar* refusal_reply(const mailsuspend_result& r) noexcept {
    char buffer[kReplyMax];
    std::snprintf(buffer, sizeof buffer, "%s %s", r.status, r.text);
    return reinterpret_cast<uschar*>(exim_copy(buffer));
}

const char* arg(int argc, uschar* argv[], int index) noexcept {
    return index < argc && argv[index] ? reinterpret_cast<const char*>(argv[index]) : "";
}

// A dlfunc called with the wrong arguments is a configuration error: the
// expansion fails (ACL: temporary rejection, router: defer), Exim logs why.
int usage_error(uschar** yield, const char* function, const char* usage) noexcept {
    char buffer[256];
    std::snprintf(buffer, sizeof buffer, "mailsuspend: %s expects %s", function, usage);
    *yield = reinterpret_cast<uschar*>(exim_copy(buffer));
    return ERROR;
}

int internal_error(uschar** yield, const char* function) noexcept {
    log_main("internal error in %s: carrying on unchecked", function);
    *yield = reinterpret_cast<uschar*>(exim_copy(""));
    return OK;
}

const char* mode_word(enum mailsuspend_mode mode) noexcept {
    switch (mode) {
    case MAILSUSPEND_MODE_DELIVER: return "deliver";
    case MAILSUSPEND_MODE_DISCARD: return "discard";
    case MAILSUSPEND_MODE_REJECT: return "reject";
    case MAILSUSPEND_MODE_QUEUE: return "queue";
    case MAILSUSPEND_MODE_EXPIRED: return "expired";
    }
    return "unknown";
}

bool receive_suspended(const mailsuspend_result& r) noexcept {
    return r.verdict == MAILSUSPEND_DENY && r.mode != MAILSUSPEND_MODE_DELIVER;
}

// ---- local_scan: after DATA ------------------------------------------------

// exim4-daemon-light has no ${dlfunc}: no RCPT ACL and no routers, so
// local_scan does what it can for suspended recipients (README, "light").
int scan_recipients_light(struct mailsuspend_handle* ms) noexcept {
    bool freeze = false;
    // Backwards: removing recipient i only moves the ones already seen.
    for (int i = current_recipient_count() - 1; i >= 0; --i) {
        const char* address = current_recipient(i);
        mailsuspend_result r{};
        mailsuspend_check_receive(ms, address, 0, &r);
        mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED,
                                receive_suspended(r) ? mode_word(r.mode) : "deliver");
        if (!receive_suspended(r)) continue;
        if (r.mode == MAILSUSPEND_MODE_QUEUE) {
            log_main("queue recipient=%s id=%s scope=%s at=data (message frozen)", address,
                     current_message_id(), r.scope);
            freeze = true;
            continue;
        }
        // discard, or reject of one recipient among others: local_scan cannot
        // refuse a single recipient, so it drops it and says so.
        log_main("%s recipient=%s id=%s scope=%s at=data%s", mode_word(r.mode), address,
                 current_message_id(), r.scope,
                 r.mode == MAILSUSPEND_MODE_DISCARD ? "" : " (dropped: sender not told)");
        remove_recipient(address);
    }
    return freeze ? LOCAL_SCAN_ACCEPT_FREEZE : LOCAL_SCAN_ACCEPT;
}

// Every recipient in reject mode: the whole message is refused (the RCPT ACL
// refuses them one by one where it is installed).  Fills first_reject.
bool all_recipients_rejected(struct mailsuspend_handle* ms, mailsuspend_result& first_reject) noexcept {
    const int total = current_recipient_count();
    for (int i = 0; i < total; ++i) {
        mailsuspend_result r{};
        mailsuspend_check_receive(ms, current_recipient(i), 0, &r);
        if (!receive_suspended(r) || r.mode != MAILSUSPEND_MODE_REJECT) return false;
        if (i == 0) first_reject = r;
    }
    return total > 0;
}

// A message of a sender whose send is held: accepted and marked with the
// sender in $local_scan_data (kept in the spool); the mailsuspend_hold
// router defers it at every delivery attempt, the first one included (so
// the queue shows why it waits), until the hold is lifted.  Without
// routers (exim4-daemon-light) it is frozen instead: `release` thaws it.
int hold_message(const char* identity, const char* ip, const mailsuspend_result& r, uschar** return_text) noexcept {
    const bool routers = dlfunc_available();
    *return_text = reply(mailsuspend_held_mark(), identity);  // $local_scan_data
    log_main("send held sender=%s scope=%s client=%s id=%s recipients=%d at=data (%s)", identity, r.scope,
             ip ? ip : "local", current_message_id(), current_recipient_count(),
             routers ? "deferred until released" : "frozen until released");
    return routers ? LOCAL_SCAN_ACCEPT : LOCAL_SCAN_ACCEPT_FREEZE;
}

// The first part of a refused message's body kept as evidence for the AUP
// notice (the core cuts samples at 128 KiB; headers come on top).
constexpr size_t kSampleBody = 64 * 1024;

// A submission (identity known) after DATA: counted once with every
// recipient, refused on the core's DENY (evidence kept), else it gets our
// sender token.  Returns LOCAL_SCAN_ACCEPT to carry on with the recipients.
int scan_submission(struct mailsuspend_handle* ms, int data_fd, const char* identity,
                    const char* ip, bool all_rejected, uschar** return_text) {
    // A message all of whose recipients are refused is not sent: a check
    // without recipients counts nothing (but may extend a rate suspension).
    std::vector<const char*> rcpts;
    if (!all_rejected) {
        rcpts.reserve(static_cast<size_t>(current_recipient_count()));
        for (int i = 0; i < current_recipient_count(); ++i) rcpts.push_back(current_recipient(i));
    }
    mailsuspend_result r{};
    const MessageRefusal refusal = message_refused(
        ms, identity, ip, rcpts.data(), static_cast<unsigned>(rcpts.size()), &r);
    if (refusal == MessageRefusal::ip_throttled) {  // temporary, nobody's evidence
        *return_text = refusal_reply(r);
        return LOCAL_SCAN_TEMPREJECT;
    }
    if (refusal == MessageRefusal::held) return hold_message(identity, ip, r, return_text);
    if (refusal != MessageRefusal::none) {
        if (!r.fail_policy) {
            const std::string sample = message_sample(data_fd, kSampleBody);
            mailsuspend_keep_sample(ms, identity, sample.data(), sample.size());
        }
        *return_text = refusal_reply(r);
        return LOCAL_SCAN_REJECT;
    }
    char token[MAILSUSPEND_TOKEN_MAX];
    if (!all_rejected && mailsuspend_sender_token(ms, identity, token, sizeof token) > 0)
        add_header(MAILSUSPEND_TOKEN_HEADER, token);
    return LOCAL_SCAN_ACCEPT;
}

int scan_message(int data_fd, uschar** return_text) {
    struct mailsuspend_handle* ms = store_handle(nullptr);
    if (!ms) return LOCAL_SCAN_ACCEPT;

    // Only our own token may name an account: whatever a client put in is
    // dropped from every message, submission or inbound.
    if (const int dropped = drop_header(MAILSUSPEND_TOKEN_HEADER))
        log_main("dropped %d client-supplied %s header(s) id=%s", dropped, MAILSUSPEND_TOKEN_HEADER,
                 current_message_id());

    mailsuspend_result first_reject{};
    const bool all_rejected = all_recipients_rejected(ms, first_reject);
    const char* ip = current_client_ip();
    const char* identity = mailsuspend_sending_identity(ms, smtp_auth_id(), current_sender(), ip);
    if (identity) {
        const int verdict = scan_submission(ms, data_fd, identity, ip, all_rejected, return_text);
        if (verdict != LOCAL_SCAN_ACCEPT) return verdict;
    }
    if (all_rejected) {
        for (int i = 0; i < current_recipient_count(); ++i)
            mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED, "reject");
        log_main("message rejected recipients=%d first=%s scope=%s at=data", current_recipient_count(),
                 current_recipient(0), first_reject.scope);
        *return_text = refusal_reply(first_reject);
        return LOCAL_SCAN_REJECT;
    }
    // With ${dlfunc} the routers hold, drop or bounce per recipient.
    return dlfunc_available() ? LOCAL_SCAN_ACCEPT : scan_recipients_light(ms);
}

// The handle, the client IP (NULL when local) and the identity that sends
// (NULL for inbound mail), from {config}{$authenticated_id}{$sender_address}
// {$sender_host_address}, or from {config} alone and the message's own
// variables, read as local_scan reads them (the snippets' form: Exim then
// expands three arguments fewer, about 10 k instructions per SMTP message).
// The three are given when there are four arguments or more (no short form
// has that many).  Shared by mailsuspend_send, _queued, _held, _unknown_rcpt
// and _outcome.
struct Sender {
    struct mailsuspend_handle* ms;
    const char* ip;
    const char* identity;
};

Sender sender_of(int argc, uschar* argv[]) {
    const bool given = argc >= 4;
    struct mailsuspend_handle* ms = store_handle(arg(argc, argv, 0));
    const char* ip = given ? (*arg(argc, argv, 3) ? arg(argc, argv, 3) : nullptr) : current_client_ip();
    if (!ms) return {nullptr, ip, nullptr};
    const char* auth_id = given ? arg(argc, argv, 1) : smtp_auth_id();
    const char* sender = given ? arg(argc, argv, 2) : current_sender();
    return {ms, ip, mailsuspend_sending_identity(ms, auth_id, sender, ip)};
}

// ${dlfunc{SO}{<function>}{CONFIG}} -> "yes" when on(handle) says the
// limit that function stands for is on, else "no" (an internal error: "",
// false too, so nothing is counted).
int limit_is_on(uschar** yield, int argc, uschar* argv[], const char* function,
                int (*on)(struct mailsuspend_handle*)) noexcept {
    try {
        if (argc != 1) return usage_error(yield, function, "{config}");
        struct mailsuspend_handle* ms = store_handle(arg(argc, argv, 0));
        *yield = reply("", ms && on(ms) ? "yes" : "no");
        return OK;
    } catch (...) {
        return internal_error(yield, function);
    }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int local_scan_version_major(void) {
    return LOCAL_SCAN_ABI_VERSION_MAJOR;
}
__attribute__((visibility("default"))) int local_scan_version_minor(void) {
    return LOCAL_SCAN_ABI_VERSION_MINOR;
}

__attribute__((visibility("default"))) int local_scan(int fd, uschar** return_text) {
    if (fd < 0) return LOCAL_SCAN_ACCEPT;  // no message: load_local_scan_in_daemon
    entering_local_scan();
    int verdict = LOCAL_SCAN_ACCEPT;
    try {
        verdict = scan_message(fd, return_text);
    } catch (...) {
        log_main("internal error in local_scan: message accepted unchecked");
    }
    leaving_local_scan();
    return verdict;
}

// ${dlfunc{SO}{mailsuspend_ping}} -> "pong": tells local_scan that routers can run.
__attribute__((visibility("default"))) int mailsuspend_ping(uschar** yield, int, uschar*[]) {
    *yield = reinterpret_cast<uschar*>(exim_copy("pong"));
    return OK;
}

// ${dlfunc{SO}{mailsuspend_preload}{CONFIG}} -> "".  The main snippet has the
// daemon expand it for every connection (smtp_accept_max_per_host): the
// module is loaded and the store opened once, in the daemon, and every
// process forked for a connection inherits both.
__attribute__((visibility("default"))) int mailsuspend_preload(uschar** yield, int argc,
                                                               uschar* argv[]) {
    try {
        note_dlfunc_available();
        refresh_in_daemon(arg(argc, argv, 0));
        load_local_scan_in_daemon();
    } catch (...) {
        log_main("internal error in mailsuspend_preload");
    }
    *yield = reinterpret_cast<uschar*>(exim_copy(""));
    return OK;
}

// ${dlfunc{SO}{mailsuspend_send}{CONFIG}[{$authenticated_id}{$sender_address}{$sender_host_address}]}
// -> "" when the sender may send, else the reply text (ACL: deny with 550 5.7.13).
__attribute__((visibility("default"))) int mailsuspend_send(uschar** yield, int argc,
                                                            uschar* argv[]) {
    try {
        if (argc != 1 && argc != 4)
            return usage_error(yield, "mailsuspend_send",
                               "{config}[{$authenticated_id}{$sender_address}{$sender_host_address}]");
        const auto [ms, ip, identity] = sender_of(argc, argv);
        mailsuspend_result r{};
        const bool refused = identity && send_refused(ms, identity, ip, "mail", &r);
        *yield = reply("", refused ? r.text : "");
        return OK;
    } catch (...) {
        return internal_error(yield, "mailsuspend_send");
    }
}

// ${dlfunc{SO}{mailsuspend_rcpt}{CONFIG}{$local_part@$domain}}
// -> "" unless the recipient is suspended in reject mode, else the reply text
// (ACL: deny with 550 5.2.1).  Other modes are the routers' business.
__attribute__((visibility("default"))) int mailsuspend_rcpt(uschar** yield, int argc,
                                                            uschar* argv[]) {
    try {
        if (argc != 2) return usage_error(yield, "mailsuspend_rcpt", "{config}{recipient}");
        struct mailsuspend_handle* ms = store_handle(arg(argc, argv, 0));
        mailsuspend_result r{};
        if (ms) mailsuspend_check_receive(ms, arg(argc, argv, 1), 0, &r);
        const bool rejected = ms && receive_suspended(r) && r.mode == MAILSUSPEND_MODE_REJECT;
        if (rejected) mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED, "reject");
        if (rejected)
            log_main("rcpt rejected recipient=%s scope=%s client=%s at=rcpt%s",
                     arg(argc, argv, 1), r.scope, current_client_ip() ? current_client_ip() : "local",
                     r.fail_policy ? " fail_policy=closed" : "");
        *yield = reply("", rejected ? r.text : "");
        return OK;
    } catch (...) {
        return internal_error(yield, "mailsuspend_rcpt");
    }
}

// ${dlfunc{SO}{mailsuspend_counts_unknown}{CONFIG}} -> "yes" when
// limits.unknown_recipients_per_hour is on, else "no": the RCPT ACL verifies
// an authenticated sender's recipients only then.
__attribute__((visibility("default"))) int mailsuspend_counts_unknown(uschar** yield, int argc,
                                                                      uschar* argv[]) {
    return limit_is_on(yield, argc, argv, "mailsuspend_counts_unknown", mailsuspend_counts_unknown_recipients);
}

// ${dlfunc{SO}{mailsuspend_unknown_rcpt}{CONFIG}{$authenticated_id}{$sender_address}{$sender_host_address}{$local_part@$domain}}
// -> "": the RCPT ACL refused the recipient as non-existent; counted against
// limits.unknown_recipients_per_hour (the core suspends send when crossed).
__attribute__((visibility("default"))) int mailsuspend_unknown_rcpt(uschar** yield, int argc,
                                                                    uschar* argv[]) {
    try {
        if (argc != 5)
            return usage_error(yield, "mailsuspend_unknown_rcpt",
                               "{config}{$authenticated_id}{$sender_address}{$sender_host_address}{recipient}");
        const auto [ms, ip, identity] = sender_of(argc, argv);
        if (identity && mailsuspend_count_unknown_recipient(ms, identity, ip))
            log_main("send suspended sender=%s client=%s at=rcpt recipient=%s limit=unknown_recipients_per_hour",
                     identity, ip ? ip : "local", arg(argc, argv, 4));
        *yield = reinterpret_cast<uschar*>(exim_copy(""));
        return OK;
    } catch (...) {
        return internal_error(yield, "mailsuspend_unknown_rcpt");
    }
}

// ${dlfunc{SO}{mailsuspend_counts_outcomes}{CONFIG}} -> "yes" when
// limits.failed_share_percent is on, else "no": the event_action reports
// delivery outcomes only then (one call per event, answered from the config).
__attribute__((visibility("default"))) int mailsuspend_counts_outcomes(uschar** yield, int argc,
                                                                       uschar* argv[]) {
    return limit_is_on(yield, argc, argv, "mailsuspend_counts_outcomes", mailsuspend_counts_delivery_outcomes);
}

// ${dlfunc{SO}{mailsuspend_outcome}{CONFIG}{auth id}{$sender_address}{$sender_host_address}{$local_part@$domain}{$event_name}{first}}
// -> "": one recipient's delivery event (msg:delivery, msg:fail:delivery,
// msg:fail:internal, msg:rcpt:defer, msg:defer), first = "yes" at the
// message's first delivery attempt; counted against limits.failed_share_percent.
__attribute__((visibility("default"))) int mailsuspend_outcome(uschar** yield, int argc, uschar* argv[]) {
    try {
        if (argc != 7)
            return usage_error(yield, "mailsuspend_outcome",
                               "{config}{auth id}{$sender_address}{$sender_host_address}{recipient}{$event_name}"
                               "{first: yes|no}");
        const auto [ms, ip, identity] = sender_of(argc, argv);
        const std::string_view event = arg(argc, argv, 5);
        const enum mailsuspend_outcome outcome = event == "msg:delivery" ? MAILSUSPEND_OUTCOME_DELIVERED
                                                 : event.find(":defer") != std::string_view::npos
                                                     ? MAILSUSPEND_OUTCOME_DEFERRED
                                                     : MAILSUSPEND_OUTCOME_BOUNCED;
        const bool first = std::strcmp(arg(argc, argv, 6), "yes") == 0;
        if (identity && mailsuspend_count_delivery_outcome(ms, identity, ip, arg(argc, argv, 4), outcome, first))
            log_main("send suspended sender=%s at=delivery recipient=%s event=%s limit=failed_share_percent",
                     identity, arg(argc, argv, 4), arg(argc, argv, 5));
        *yield = reinterpret_cast<uschar*>(exim_copy(""));
        return OK;
    } catch (...) {
        return internal_error(yield, "mailsuspend_outcome");
    }
}

// Router data: ${dlfunc{SO}{mailsuspend_route}{CONFIG}{$local_part@$domain}{$message_age}}
// -> forced failure (the router declines: deliver normally), ":blackhole:"
// (discard), ":defer: text" (queue), ":fail: text" (reject or queue expired).
__attribute__((visibility("default"))) int mailsuspend_route(uschar** yield, int argc,
                                                             uschar* argv[]) {
    try {
        if (argc != 3)
            return usage_error(yield, "mailsuspend_route", "{config}{recipient}{$message_age}");
        struct mailsuspend_handle* ms = store_handle(arg(argc, argv, 0));
        const char* rcpt = arg(argc, argv, 1);
        const long age = std::strtol(arg(argc, argv, 2), nullptr, 10);
        mailsuspend_result r{};
        if (ms) mailsuspend_check_receive(ms, rcpt, age, &r);
        // Counted for a message being delivered, not for address tests (exim -bt).
        if (ms && std::strcmp(current_message_id(), "-") != 0)
            mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED,
                                    receive_suspended(r) ? mode_word(r.mode) : "deliver");
        if (!ms || !receive_suspended(r)) {
            *yield = reinterpret_cast<uschar*>(exim_copy(""));
            return FAIL_FORCED;
        }
        log_main("%s recipient=%s id=%s scope=%s age=%lds at=route%s", mode_word(r.mode), rcpt,
                 current_message_id(), r.scope, age, r.fail_policy ? " fail_policy=closed" : "");
        switch (r.mode) {
        case MAILSUSPEND_MODE_DISCARD: *yield = reply(":blackhole:", ""); break;
        case MAILSUSPEND_MODE_QUEUE: *yield = reply(":defer: ", r.text); break;
        default: *yield = reply(":fail: ", r.text); break;  // reject, expired
        }
        return OK;
    } catch (...) {
        *yield = reinterpret_cast<uschar*>(exim_copy("mailsuspend: internal error"));
        return DEFER;
    }
}

// Router data: ${dlfunc{SO}{mailsuspend_queued}{CONFIG}[{$authenticated_id}{$sender_address}{$sender_host_address}]}
// -> ":fail: text" when the message's sender is send-suspended with
// --fail-queued (the message bounces to its sender), else forced failure.
__attribute__((visibility("default"))) int mailsuspend_queued(uschar** yield, int argc,
                                                              uschar* argv[]) {
    try {
        if (argc != 1 && argc != 4)
            return usage_error(yield, "mailsuspend_queued",
                               "{config}[{$authenticated_id}{$sender_address}{$sender_host_address}]");
        const auto [ms, ip, identity] = sender_of(argc, argv);
        mailsuspend_result r{};
        if (identity) mailsuspend_check_send(ms, identity, ip, &r);
        if (!identity || r.verdict != MAILSUSPEND_DENY || !r.fail_queued) {
            *yield = reinterpret_cast<uschar*>(exim_copy(""));
            return FAIL_FORCED;
        }
        log_main("queued message failed sender=%s id=%s scope=%s at=route", identity,
                 current_message_id(), r.scope);
        *yield = reply(":fail: ", r.text);
        return OK;
    } catch (...) {
        *yield = reinterpret_cast<uschar*>(exim_copy("mailsuspend: internal error"));
        return DEFER;
    }
}

// Router data: ${dlfunc{SO}{mailsuspend_held}{CONFIG}[{$authenticated_id}{$sender_address}{$sender_host_address}]{$message_age}}
// for a message the module held (the router's condition looks for the mark):
// ":defer: text" while its sender's send stays suspended, ":fail: text" past
// delivery.queue_expiry (it bounces to the sender), forced failure once
// lifted (the router declines: delivered normally).
__attribute__((visibility("default"))) int mailsuspend_held(uschar** yield, int argc, uschar* argv[]) {
    try {
        if (argc != 2 && argc != 5)
            return usage_error(yield, "mailsuspend_held",
                               "{config}[{$authenticated_id}{$sender_address}{$sender_host_address}]{$message_age}");
        const auto [ms, ip, identity] = sender_of(argc, argv);
        const long age = std::strtol(arg(argc, argv, argc - 1), nullptr, 10);
        mailsuspend_result r{};
        if (identity) mailsuspend_check_held(ms, identity, ip, age, &r);
        if (!identity || r.verdict != MAILSUSPEND_DENY) {
            *yield = reinterpret_cast<uschar*>(exim_copy(""));
            return FAIL_FORCED;
        }
        const bool expired = r.mode == MAILSUSPEND_MODE_EXPIRED;
        log_main("held message %s sender=%s id=%s scope=%s age=%lds at=route", expired ? "expired" : "deferred",
                 identity, current_message_id(), r.scope, age);
        *yield = reply(expired ? ":fail: " : ":defer: ", r.text);
        return OK;
    } catch (...) {
        *yield = reinterpret_cast<uschar*>(exim_copy("mailsuspend: internal error"));
        return DEFER;
    }
}

}  // extern "C"
