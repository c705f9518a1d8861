// The module's decisions in Exim terms: each function turns one Exim event
// into one core call (common/include/mailsuspend/mailsuspend.h) and the
// core's answer into what Exim needs.  No suspension rule lives here.
#pragma once

#include <mailsuspend/mailsuspend.h>

namespace mailsuspend_exim {

// The process's store handle, opened on first use with config_path (empty or
// nullptr: the path used before in this process, else the environment variable MAILSUSPEND_CONF,
// else MAILSUSPEND_DEFAULT_CONFIG); reopened when a different path is asked
// for.  nullptr only when out of memory.
struct mailsuspend_handle* store_handle(const char* config_path) noexcept;

// Exim puts its own SIGBUS handler in place around local_scan and the
// default one after it: local_scan calls entering_local_scan() first and
// leaving_local_scan() last, and the next store_handle() puts the core's
// guard back (a store file cut short must not end the process).
void entering_local_scan() noexcept;
void leaving_local_scan() noexcept;

// For the daemon, per connection (mailsuspend_preload): opens the handle
// with config_path, or reopens it when that file changed (one stat()), and
// makes one lookup so a new store generation or a store that came back is
// picked up; the process forked for the connection inherits the open handle
// and does not open anything itself.
void refresh_in_daemon(const char* config_path) noexcept;

// MAIL FROM: the send check for identity, as the core's count of a message
// with no recipients (nothing is counted, but an attempt while send is
// rate-suspended extends the suspension: limits.extend_on_attempt).  Logs a
// refusal.  Returns true when refused and fills result_r (text without
// status code); false for a sender whose mail is held (result_r->hold):
// accepted here, held after DATA.
bool send_refused(struct mailsuspend_handle* ms, const char* identity, const char* client_ip,
                  const char* where, struct mailsuspend_result* result_r) noexcept;

// After DATA: why a message of identity was refused, if it was.
enum class MessageRefusal {
    none,                // accepted and counted against the rate limits
    send_suspended,      // send suspended (before, or by this message crossing a limit)
    too_many_recipients, // over limits.recipients_per_message; nothing suspended
    ip_throttled,        // temporary: the client IP's hourly limit; nothing suspended
    held                 // send suspended with hold: accept it and hold it in the queue
};

// After DATA: counts the message with all its recipients, once (the core
// decides what is off-domain and whether a limit is crossed, and suspends
// then and there).  Logs a refusal.  recipients may be nullptr with
// count 0: a check that counts nothing.
MessageRefusal message_refused(struct mailsuspend_handle* ms, const char* identity,
                               const char* client_ip, const char* const* recipients,
                               unsigned count, struct mailsuspend_result* result_r) noexcept;

}  // namespace mailsuspend_exim
