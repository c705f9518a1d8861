/* When a live session is re-checked (see the header). */
#include "lib.h"
#include "ioloop.h"
#include "time-util.h"
#include "mail-user.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"
#include "mailsuspend-light.h"
#include "mailsuspend-live.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool fallback_logged; /* once per process */

static void live_check_now(struct mailsuspend_live *live)
{
	timeout_remove(&live->to_coalesce);
	live->last_check = ioloop_timeval;
	mailsuspend_session_recheck_mark(&live->recheck);
	/* Last: this may destroy the session, and live with it. */
	live->check(live->context);
}

static void live_fallback_wakeup(struct mailsuspend_live *live)
{
	if (mailsuspend_session_recheck_due(&live->recheck))
		live_check_now(live);
}

static void live_safety_wakeup(struct mailsuspend_live *live)
{
	live_check_now(live);
}

/* No push: today's stamp-gated timer, and why, once per process. */
static void live_use_fallback(struct mailsuspend_live *live, const char *why)
{
	io_remove(&live->io_push);
	timeout_remove(&live->to);
	live->to = timeout_add(MAILSUSPEND_RECHECK_MSECS,
			       live_fallback_wakeup, live);
	if (fallback_logged)
		return;
	fallback_logged = TRUE;
	/* Info: sessions are still ended within 5 s, only at a higher idle
	   cost (a missing store already has its error line). */
	e_info(live->user->event,
		  "mailsuspend: %s: live sessions re-checked every %u ms "
		  "instead of on each store change", why,
		  (unsigned int)MAILSUSPEND_RECHECK_MSECS);
}

static void live_pushed(struct mailsuspend_live *live);

/* Watches the notify file; FALSE with why_r when the push is unavailable. */
static bool live_push_add(struct mailsuspend_live *live, const char **why_r)
{
	struct stat st;

	/* inotify_add_watch() needs read access, and after any failure but
	   ENOENT Dovecot disables inotify for the whole process (IDLE's
	   watches too): so it is asked only for a file it will accept. */
	if (faccessat(AT_FDCWD, live->push_path, R_OK, AT_EACCESS) < 0 ||
	    stat(live->push_path, &st) < 0) {
		*why_r = errno == ENOENT ?
			t_strdup_printf("%s: missing", live->push_path) :
			t_strdup_printf("%s: %m", live->push_path);
		return FALSE;
	}
	switch (io_add_notify(live->push_path, live_pushed, live,
			      &live->io_push)) {
	case IO_NOTIFY_ADDED:
		live->push_dev = st.st_dev;
		live->push_ino = st.st_ino;
		return TRUE;
	case IO_NOTIFY_NOTFOUND:
		*why_r = t_strdup_printf("%s: missing", live->push_path);
		return FALSE;
	case IO_NOTIFY_NOSUPPORT:
	default:
		*why_r = "no inotify for this process (Dovecot logs why: "
			"fs.inotify.max_user_instances or max_user_watches?)";
		return FALSE;
	}
}

/* The watched file was deleted or replaced: the watch is dead (inotify
   reports IN_DELETE_SELF / IN_IGNORED, which land here). */
static bool live_push_lost(const struct mailsuspend_live *live)
{
	struct stat st;

	return stat(live->push_path, &st) < 0 || st.st_dev != live->push_dev ||
		st.st_ino != live->push_ino;
}

static void live_coalesced(struct mailsuspend_live *live)
{
	live_check_now(live);
}

static void live_pushed(struct mailsuspend_live *live)
{
	const char *why;
	int msecs;

	if (live_push_lost(live)) {
		io_remove(&live->io_push);
		if (!live_push_add(live, &why))
			live_use_fallback(live, why);
		live_check_now(live);
		return;
	}
	if (live->to_coalesce != NULL)
		return; /* a burst: its check is already due */
	msecs = timeval_diff_msecs(&ioloop_timeval, &live->last_check);
	if (msecs < 0 || msecs >= MAILSUSPEND_PUSH_COALESCE_MSECS) {
		live_check_now(live);
		return;
	}
	live->to_coalesce = timeout_add(MAILSUSPEND_PUSH_COALESCE_MSECS - msecs,
					live_coalesced, live);
}

static void live_first_wakeup(struct mailsuspend_live *live)
{
	const char *path, *why;

	timeout_remove(&live->to);
	/* From the session's ticket, else from the core (loading it). */
	path = mailsuspend_light_notify_path(live->user);
	if (path == NULL) {
		path = mailsuspend_lazy_notify_path(live->user->event,
			mail_user_plugin_getenv(live->user, MAILSUSPEND_SETTING_CONFIG));
	}
	if (path != NULL) {
		/* The watch before the check: a change made after the
		   check is then pushed. */
		live->push_path = i_strdup(path);
		if (!MAILSUSPEND_PUSH) {
			live_use_fallback(live, "push disabled in this build");
		} else if (live_push_add(live, &why)) {
			live->to = timeout_add(MAILSUSPEND_SAFETY_RECHECK_MSECS,
					       live_safety_wakeup, live);
		} else {
			live_use_fallback(live, why);
		}
	}
	/* else the core could not be loaded (logged): every check allows,
	   so nothing is re-checked */
	live_check_now(live);
}

void mailsuspend_live_start(struct mailsuspend_live *live,
			    struct mail_user *user,
			    mailsuspend_live_check_func_t *check, void *context)
{
	i_zero(live);
	live->user = user;
	live->check = check;
	live->context = context;
	live->to = timeout_add(MAILSUSPEND_RECHECK_MSECS,
			       live_first_wakeup, live);
}

void mailsuspend_live_stop(struct mailsuspend_live *live)
{
	io_remove(&live->io_push);
	timeout_remove(&live->to);
	timeout_remove(&live->to_coalesce);
	i_free(live->push_path);
}
