// The C API handle and the helpers capi.cpp shares with capi_policy.cpp.
// Internal: host modules see only mailsuspend.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mailsuspend/mailsuspend.h"
#include "config.hpp"
#include "metrics.hpp"
#include "policy.hpp"
#include "store.hpp"

struct mailsuspend_handle {
    mailsuspend::Config cfg;            // built-in defaults when the file could not be read
    bool cfg_ok = false;
    std::string cfg_error;
    std::unique_ptr<mailsuspend::StoreReader> reader;
    int64_t next_open_attempt = 0;
    int64_t next_replaced_check = 0;  // when to ask whether the store file was replaced
    bool degraded_logged = false;       // whole store unavailable: logged (once per outage)
    bool record_outage_logged = false;  // one record unreadable: logged (once per process)
    mailsuspend_log_func_t* log = nullptr;
    void* log_ctx = nullptr;
    std::string open_error;  // storage for *error_r
    std::string notify_path;  // storage for mailsuspend_notify_path()
    mailsuspend::PolicyState policy;      // counters and token key, opened when first needed
    // The event counters of each host class (metrics.hpp), mapped when first needed.
    std::unique_ptr<mailsuspend::metrics::Writer> metrics[mailsuspend::metrics::kHostClasses];
    int64_t next_metrics_attempt[mailsuspend::metrics::kHostClasses] = {};
    bool metrics_logged[mailsuspend::metrics::kHostClasses] = {};
};

namespace mailsuspend::capi {

constexpr int64_t kReopenInterval = 1;  // seconds between attempts to open a missing file
constexpr int64_t kMetricsRetryInterval = 60;  // the same for a metrics file (init run later)

void log_line(struct mailsuspend_handle* ms, mailsuspend_log_level level, const std::string& msg);
// A result as every check starts it: allowed, deliver, nothing in force.
// Inline: every check calls it.
inline void reset(mailsuspend_result* r, const char* service) {
    r->verdict = MAILSUSPEND_ALLOW;
    r->mode = MAILSUSPEND_MODE_DELIVER;
    r->service = service;
    r->scope = "none";
    r->fail_policy = 0;
    r->fail_queued = 0;
    r->hold = 0;
    r->status = "";
    r->text[0] = '\0';
}
// The reply: message (a configured messages.* text, placed as it is: the
// config reader checked it) and, when include_reason, " (reason)" cleaned
// (a reason comes from the store).
void set_text(mailsuspend_result* r, const std::string& message, const std::string& reason,
              bool include_reason);
// The store reader, opened (or reopened) at most once a second: within the
// second, the reader as it is (inline: every check asks), else
// reader_reopened, which also follows a store deleted and initialised again.
StoreReader* reader_reopened(struct mailsuspend_handle* ms, int64_t now);
inline StoreReader* reader_of(struct mailsuspend_handle* ms, int64_t now) {
    if (ms->reader && now < ms->next_replaced_check) return ms->reader.get();
    return reader_reopened(ms, now);
}
// Normalises address into buf; false (allow: such a name cannot be
// suspended) when it cannot be a key.  Inline: every check calls it.
inline bool key_of(struct mailsuspend_handle* ms, const char* address, char* buf, std::size_t size,
                   std::string_view& key) {
    if (!address) return false;
    const std::size_t n = normalise(address, ms->cfg.address, buf, size, nullptr, nullptr);
    key = std::string_view(buf, n);
    return n > 0;
}

// The service a login over protocol is checked as (webmail from its hosts);
// nullopt for protocols never refused at login (lmtp, lda, ...).
std::optional<Service> login_service(struct mailsuspend_handle* ms, const char* protocol, const char* client_ip);

// The rate counters file, opened on first use (at most one attempt a
// second); nullptr when it cannot be.
Counters* counters_of(struct mailsuspend_handle* ms, int64_t now);
// The event counters of class c, mapped on first use (at most one attempt a
// minute; a failure is logged once and nothing is counted).
metrics::Writer* metrics_of(struct mailsuspend_handle* ms, metrics::HostClass c);
// One event: one relaxed atomic add, nothing when the file is not mapped.
void count(struct mailsuspend_handle* ms, metrics::HostClass c, int slot);
// The host class whose processes check service.
metrics::HostClass class_of(Service service);
// An address in the reserved TLD .invalid (RFC 2606): the hosts' and the
// doctor's probes, never counted.
bool is_probe(const char* address);

template <typename F>
void guarded(mailsuspend_result* r, F&& body) {
    try {
        body();
    } catch (...) {  // e.g. std::bad_alloc: never past the C boundary
        r->verdict = MAILSUSPEND_ALLOW;
        r->fail_policy = 1;
    }
}

}  // namespace mailsuspend::capi
