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

// For the daemon, per connection (mailsuspend_preload): opens the handle
// with config_path, or reopens it when that file changed (one stat()), and
// makes one lookup so a new store generation or a store that came back is
// picked up; the process forked for the connection inherits the open handle
// and does not open anything itself.
void refresh_in_daemon(const char* config_path) noexcept;

// Who is sending, in the sense of the "send" suspension:
//  - an SMTP AUTH client: its authenticated id;
//  - a local submission (sendmail, exim -bs: no client IP) or a webmail.hosts
//    client that did not authenticate: the envelope sender;
//  - anyone else is inbound mail from the Internet: nobody to check (nullptr).
const char* sending_identity(struct mailsuspend_handle* ms, const char* authenticated_id,
                             const char* sender, const char* client_ip) noexcept;

// Send check for identity; logs a refusal.  Returns true when refused and
// fills result_r (text without status code).
bool send_refused(struct mailsuspend_handle* ms, const char* identity, const char* client_ip,
                  const char* where, struct mailsuspend_result* result_r) noexcept;

}  // namespace mailsuspend_exim
