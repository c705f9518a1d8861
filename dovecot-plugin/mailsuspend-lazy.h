/* The core, loaded on first use in mail processes.

   A mail process lives for one session (Dovecot's default service_count =
   1), so whatever a mail plugin loads is paid on every login.  Loading the
   core, opening the store and a first check cost 0.4-0.7 ms of CPU per
   process (bench/core_load; bench/results/2026-12-02.md "What a mail process pays"); many
   sessions (webmail requests, POP3 polls) are over before the plugins'
   first re-check.  So the imap and pop3 plugins link no core: they
   dlopen() it from <module dir>/mailsuspend/libmailsuspend_core.so when they
   first need an answer.  The auth passdb, in a long-lived process, links
   the core. */
#ifndef MAILSUSPEND_LAZY_H
#define MAILSUSPEND_LAZY_H

#include "mailsuspend/mailsuspend.h"

struct event;
struct module;

/* Remembers where the core lives: next to the plugin `module`. */
void mailsuspend_lazy_init(const struct module *module);
void mailsuspend_lazy_deinit(void);

/* mailsuspend_check_login() through the lazily loaded core, opened from
   config_path on first use.  If the core cannot be loaded, logs once
   through event (the session's) and allows (logins are still checked by
   the passdb). */
void mailsuspend_lazy_check_login(struct event *event,
				  const char *config_path, const char *user,
				  const char *protocol, const char *client_ip,
				  struct mailsuspend_result *result_r);

/* mailsuspend_count_event() through the core, if it is loaded (a session
   ends only after a check, which loads it); else nothing. */
void mailsuspend_lazy_count_event(enum mailsuspend_event event, const char *label);

/* mailsuspend_change_stamp() of the loaded core; 0 until it is loaded. */
unsigned long long mailsuspend_lazy_change_stamp(void);

/* mailsuspend_notify_path() through the core, loading it from config_path
   if need be (a failure logged through event); NULL when it cannot be
   loaded. */
const char *mailsuspend_lazy_notify_path(struct event *event,
					 const char *config_path);

#endif
