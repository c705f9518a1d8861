/* When a live IMAP or POP3 session asks the core again whether its service
   became suspended (issue 12 item 8: an idle session should cost Dovecot
   nearly nothing, yet end within 5 s of `mailsuspend suspend`).

   1. MAILSUSPEND_RECHECK_MSECS after the session started, the first check.
      Until then the passdb's answer at login stands; this keeps short
      sessions (a webmail request, a POP3 poll) from loading the core
      (mailsuspend-lazy.h).
   2. Push.  At that first check the session watches the store's notify
      file (<store.path>/changed, which every writer writes after each
      change that puts imap, pop3, webmail or sieve in force: StoreWriter)
      with Dovecot's io_add_notify(): inotify, one
      inotify fd per process shared with IDLE's own watches.  An idle
      session then has no timer of its own and wakes only when a writer
      changed the store.  Wake-ups are coalesced: at most one check per
      MAILSUSPEND_PUSH_COALESCE_MSECS, the rest of a burst is looked at
      together at its end.
   3. Safety.  Every MAILSUSPEND_SAFETY_RECHECK_MSECS a full check anyway:
      a change inotify never reports (a store file restored or replaced by
      hand rather than by a writer; a writer that could not write the
      notify file; an inotify queue overflow, which Dovecot drops) is still
      found, if late.
   4. Fallback.  Without the push (the notify file missing or unreadable,
      io_add_notify() answering NOTFOUND or NOSUPPORT: the inotify limits
      fs.inotify.max_user_instances / max_user_watches, per UID), logged
      once per process: a timer every MAILSUSPEND_RECHECK_MSECS that reads
      the change stamp and looks up only when it moved (and every
      MAILSUSPEND_FULL_RECHECK_EVERY wake-ups regardless).

   Nothing here blocks: a stat() and an access() of the notify file when
   the watch is set up or fires, never a read of it. */
#ifndef MAILSUSPEND_LIVE_H
#define MAILSUSPEND_LIVE_H

#include "mailsuspend-session.h"

#ifndef MAILSUSPEND_PUSH /* -DMAILSUSPEND_PUSH=0: the timer only (benchmarks) */
#  define MAILSUSPEND_PUSH 1
#endif
#ifndef MAILSUSPEND_SAFETY_RECHECK_MSECS
#  define MAILSUSPEND_SAFETY_RECHECK_MSECS (15 * 60 * 1000)
#endif
#ifndef MAILSUSPEND_PUSH_COALESCE_MSECS
#  define MAILSUSPEND_PUSH_COALESCE_MSECS 1000
#endif

struct mail_user;
struct io;
struct timeout;

/* Looks the session up and ends it when its service is suspended; may
   destroy the session (and with it the struct mailsuspend_live). */
typedef void mailsuspend_live_check_func_t(void *context);

struct mailsuspend_live {
	struct mail_user *user;
	mailsuspend_live_check_func_t *check;
	void *context;
	struct mailsuspend_recheck recheck;
	struct timeout *to;          /* first check, safety or fallback period */
	struct timeout *to_coalesce; /* a push within a second of the last check */
	struct io *io_push;          /* the watch on the notify file */
	char *push_path;
	dev_t push_dev;
	ino_t push_ino;
	struct timeval last_check;
};

/* Starts re-checking a session: check(context) at the times above. */
void mailsuspend_live_start(struct mailsuspend_live *live,
			    struct mail_user *user,
			    mailsuspend_live_check_func_t *check, void *context);
void mailsuspend_live_stop(struct mailsuspend_live *live);

#endif
