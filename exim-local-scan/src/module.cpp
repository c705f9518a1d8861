#include "module.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "exim_host.hpp"

namespace mailsuspend_exim {
namespace {

// One handle per Exim process (Exim processes are single-threaded; the
// daemon forks a process per connection and per delivery).
struct ProcessStore {
    struct mailsuspend_handle* handle = nullptr;
    bool policy_warm = false;  // counters and token key opened (daemon only)
    char config_path[4096] = "";
    struct stat config_stat {};  // of config_path when opened (daemon only)
    bool sigbus_reset = false;   // a local_scan returned: Exim reset SIGBUS to the default
};
ProcessStore g_store;

// The core's lines may carry their own "mailsuspend: " prefix already.
const char* without_prefix(const char* msg) noexcept {
    constexpr const char prefix[] = "mailsuspend: ";
    return std::strncmp(msg, prefix, sizeof prefix - 1) == 0 ? msg + sizeof prefix - 1 : msg;
}

void log_from_core(void*, enum mailsuspend_log_level, const char* msg) {
    log_main("%s", without_prefix(msg));
}

// Opens, in the daemon, what the policy calls open lazily on first use: the
// rate counters (a shared mapping; every fork counts into the same pages)
// and the sender token key.  A process forked for a connection inherits
// both and opens nothing.  Neither call counts nor suspends anything: a
// message with no recipients is not counted, and a token is only computed.
// Once per handle; a missing counters file or key is retried by the core
// (at most once a second) when a message needs it.
void warm_policy(struct mailsuspend_handle* ms) noexcept {
    constexpr const char* nobody = "preload@mailsuspend.invalid";
    mailsuspend_result ignored{};
    mailsuspend_count_message(ms, nobody, nullptr, nullptr, 0, &ignored);
    char token[MAILSUSPEND_TOKEN_MAX];
    mailsuspend_sender_token(ms, nobody, token, sizeof token);
    g_store.policy_warm = true;
}

// The module is bound lazily (CMakeLists.txt): a function it imports is
// bound at its first call, and once bound in the daemon it is bound in every
// process forked for a connection, which would otherwise bind it again and
// fault in pages of the symbol tables of the libraries it searches.  These
// are the ones a message runs that opening the store, the counters and the
// key do not (LD_DEBUG=bindings on a daemon lists them; LazyBindingTest in
// tests/exim fails when a message binds one).  Each call is real and changes
// nothing; the arguments come from a variable and the results go to one, so
// the compiler keeps the calls (the pure ones would go otherwise).
// header_add, which only a message may call, is called through its address,
// which the loader fills in when it loads the module (exim_host.cpp).
void bind_message_path(struct mailsuspend_handle* ms) noexcept {
    const char* text = g_store.config_path;
    const std::size_t len = std::strlen(text);
    (void)mailsuspend_is_webmail_host(ms, "127.0.0.1");  // inet_pton
    char line[16];
    volatile std::size_t sink = 0;
    sink = sink + static_cast<std::size_t>(std::snprintf(line, sizeof line, "%.8s", text));
    sink = sink + static_cast<std::size_t>(::strncasecmp(text, line, len));
    sink = sink + (::memrchr(text, '@', len) != nullptr);
    sink = sink + std::strlen(expand_variable(""));  // expand_string
}

const char* path_from_environment() noexcept {
    const char* env = std::getenv("MAILSUSPEND_CONF");
    return env && *env ? env : MAILSUSPEND_DEFAULT_CONFIG;
}

}  // namespace

void entering_local_scan() noexcept {
    mailsuspend_reclaim_sigbus();  // in front of Exim's crash handler, which keeps the rest
}

void leaving_local_scan() noexcept { g_store.sigbus_reset = true; }

struct mailsuspend_handle* store_handle(const char* config_path) noexcept {
    if (g_store.sigbus_reset) {
        mailsuspend_reclaim_sigbus();
        g_store.sigbus_reset = false;
    }
    const bool asked = config_path && *config_path;
    if (g_store.handle && (!asked || std::strcmp(config_path, g_store.config_path) == 0))
        return g_store.handle;
    const char* path = asked ? config_path : path_from_environment();
    if (std::strlen(path) >= sizeof g_store.config_path) {
        log_main("config path too long, using %s", MAILSUSPEND_DEFAULT_CONFIG);
        path = MAILSUSPEND_DEFAULT_CONFIG;
    }
    if (g_store.handle) mailsuspend_close(&g_store.handle);
    g_store.policy_warm = false;
    std::strcpy(g_store.config_path, path);
    // An open error is not logged here: the core logs it, with the fail
    // policy it leads to, in one line at the first lookup that it affects.
    const char* error = nullptr;
    g_store.handle = mailsuspend_open(path, log_from_core, nullptr, &error);
    if (!g_store.handle) log_main("out of memory opening %s: checks skipped", path);
    return g_store.handle;
}

void refresh_in_daemon(const char* config_path) noexcept {
    const char* path = config_path && *config_path ? config_path : path_from_environment();
    struct stat now {};
    // An unreadable file keeps the handle it has: reopening it for every
    // connection would log the same trouble over and over.
    const bool changed = ::stat(path, &now) == 0 &&
                         (now.st_ino != g_store.config_stat.st_ino ||
                          now.st_size != g_store.config_stat.st_size ||
                          now.st_mtim.tv_sec != g_store.config_stat.st_mtim.tv_sec ||
                          now.st_mtim.tv_nsec != g_store.config_stat.st_mtim.tv_nsec);
    if (changed && g_store.handle && std::strcmp(path, g_store.config_path) == 0) {
        mailsuspend_close(&g_store.handle);
        g_store.policy_warm = false;
    }
    if (changed) g_store.config_stat = now;
    struct mailsuspend_handle* ms = store_handle(path);
    if (!ms) return;
    mailsuspend_result ignored{};
    mailsuspend_check_receive(ms, "preload@mailsuspend.invalid", 0, &ignored);
    if (g_store.policy_warm) return;
    warm_policy(ms);
    bind_message_path(ms);
}

bool send_refused(struct mailsuspend_handle* ms, const char* identity, const char* client_ip,
                  const char* where, struct mailsuspend_result* result_r) noexcept {
    mailsuspend_count_message(ms, identity, client_ip, nullptr, 0, result_r);
    if (result_r->verdict != MAILSUSPEND_DENY) return false;
    if (result_r->hold) {
        log_main("send held sender=%s scope=%s client=%s at=%s (accepted, held after DATA)", identity,
                 result_r->scope, client_ip ? client_ip : "local", where);
        return false;
    }
    log_main("send refused sender=%s service=%s scope=%s client=%s at=%s%s", identity,
             result_r->service, result_r->scope, client_ip ? client_ip : "local", where,
             result_r->fail_policy ? " fail_policy=closed" : "");
    return true;
}

MessageRefusal message_refused(struct mailsuspend_handle* ms, const char* identity,
                               const char* client_ip, const char* const* recipients,
                               unsigned count, struct mailsuspend_result* result_r) noexcept {
    mailsuspend_count_message(ms, identity, client_ip, recipients, count, result_r);
    if (result_r->verdict != MAILSUSPEND_DENY) return MessageRefusal::none;
    // The core tells a message over limits.recipients_per_message (5.5.3,
    // nothing suspended) from every other refusal (5.7.13, sending).
    if (std::strcmp(result_r->status, "5.5.3") == 0) {
        log_main("message refused sender=%s client=%s at=data recipients=%u limit=recipients_per_message",
                 identity, client_ip ? client_ip : "local", count);
        return MessageRefusal::too_many_recipients;
    }
    // The client IP's hourly limit (4.7.1): the IP is throttled, nobody suspended.
    if (std::strcmp(result_r->scope, "ip") == 0) {
        log_main("message throttled sender=%s client=%s at=data recipients=%u "
                 "limit=offdomain_recipients_per_hour_per_ip",
                 identity, client_ip ? client_ip : "local", count);
        return MessageRefusal::ip_throttled;
    }
    if (result_r->hold) return MessageRefusal::held;  // logged with the message id by local_scan
    log_main("send refused sender=%s service=%s scope=%s client=%s at=data recipients=%u%s", identity,
             result_r->service, result_r->scope, client_ip ? client_ip : "local", count,
             result_r->fail_policy ? " fail_policy=closed" : "");
    return MessageRefusal::send_suspended;
}

}  // namespace mailsuspend_exim
