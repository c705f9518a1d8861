/* What every mail plugin checks when a session starts.

   The passdb checks every login that goes through the regular passdb chain.
   A Dovecot master-user login ("user*master", or SASL PLAIN with authzid
   user and authcid master) whose master passdb lacks "pass = yes" never
   does: Dovecot ends the login in the master passdb.  The mail process sees
   such a session as one whose userdb fields name a master_user, so the
   plugins check those (and only those: an ordinary login was checked a
   moment ago by the passdb, and checking again would make every session
   load the core, see mailsuspend-lazy.h) before the client's first
   command. */
#ifndef MAILSUSPEND_SESSION_H
#define MAILSUSPEND_SESSION_H

#include "mailsuspend/mailsuspend.h"

/* Live sessions are re-checked by mailsuspend-live.h: on a push when a
   writer changed the store, else (the fallback) every
   MAILSUSPEND_RECHECK_MSECS, when the store's change stamp (one load from
   the shared mapping) moved since the session's last check, or at the
   latest every MAILSUSPEND_FULL_RECHECK_EVERY wake-ups (a store file
   replaced or overwritten in place does not move it).  The IMAP command
   hook uses the same stamp gate.  3 s keeps "a suspended session ends
   within 5 s" in the fallback too; the first check comes after this
   period as well. */
#ifndef MAILSUSPEND_RECHECK_MSECS /* a -D for benchmarks */
#  define MAILSUSPEND_RECHECK_MSECS 3000
#endif
#ifndef MAILSUSPEND_FULL_RECHECK_EVERY
#  define MAILSUSPEND_FULL_RECHECK_EVERY 10
#endif

struct mailsuspend_recheck {
	unsigned long long stamp;  /* change stamp at the last full check */
	unsigned int unchanged;    /* wake-ups since the last full check */
};

struct mail_user;
struct module;

/* The master user who logged in as user, or NULL for an ordinary login. */
const char *mailsuspend_session_master_user(const struct mail_user *user);

/* The client address of the session as a string, NULL when unknown. */
const char *mailsuspend_session_client_ip(const struct mail_user *user);

/* Asks the core about user's own service (imap, pop3, sieve); the mail
   process knows the forwarded client address only (see the README). */
void mailsuspend_session_check(struct mail_user *user,
			       struct mailsuspend_result *result_r);

/* TRUE when the session must be looked up again (see above); records the
   stamp the coming lookup answers for. */
bool mailsuspend_session_recheck_due(struct mailsuspend_recheck *state);

/* Records the stamp a lookup made now answers for (a check that is not
   gated by the stamp). */
void mailsuspend_session_recheck_mark(struct mailsuspend_recheck *state);

/* Logs that a session was refused at its start or ended. */
void mailsuspend_session_log_end(const struct mail_user *user,
				 const char *what,
				 const struct mailsuspend_result *result);

/* For protocols whose clients the plugin cannot reach before the first
   command (POP3 runs pipelined commands before any plugin hook could end
   the session; ManageSieve has no plugin API): a mail_user_created hook
   that fails the user's initialisation when a master-user login's service
   is suspended.  Dovecot then closes the connection before any command
   (POP3: no reply; ManageSieve: BYE "Internal error ...") and logs the
   reason. */
void mailsuspend_session_start_hooks_add(struct module *module);
void mailsuspend_session_start_hooks_remove(void);

#endif
