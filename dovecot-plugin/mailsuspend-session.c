/* What every mail plugin checks when a session starts (see the header). */
#include "lib.h"
#include "net.h"
#include "module-dir.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"
#include "mailsuspend-light.h"
#include "mailsuspend-session.h"


const char *mailsuspend_session_master_user(const struct mail_user *user)
{
	const char *const *field;

	if (user->userdb_fields == NULL)
		return NULL;
	/* Added by the auth process to the reply of every master-user login
	   (never cached: it is not a userdb field of the user). */
	for (field = user->userdb_fields; *field != NULL; field++) {
		if (str_begins(*field, "master_user="))
			return *field + strlen("master_user=");
	}
	return NULL;
}

const char *mailsuspend_session_client_ip(const struct mail_user *user)
{
	const struct ip_addr *ip = user->conn.remote_ip;

	return ip == NULL || ip->family == 0 ? NULL : net_ip2addr(ip);
}

/* The login protocol of the session: Dovecot names a mail user's service
   after the binary ("managesieve"), the login after the protocol ("sieve"). */
static const char *session_protocol(const struct mail_user *user)
{
	return strcmp(user->service, "managesieve") == 0 ? "sieve" :
		user->service;
}

void mailsuspend_session_check(struct mail_user *user,
			       struct mailsuspend_result *result_r)
{
	if (mailsuspend_light_allows(user)) {
		i_zero(result_r);
		result_r->verdict = MAILSUSPEND_ALLOW;
		result_r->service = session_protocol(user);
		result_r->scope = "none";
		result_r->status = "";
		return;
	}
	mailsuspend_lazy_check_login(user->event,
		mail_user_plugin_getenv(user, MAILSUSPEND_SETTING_CONFIG),
		user->username, session_protocol(user),
		mailsuspend_session_client_ip(user), result_r);
}

/* The light reader's stamp, else the core's (the same number, read from
   the same store by whichever mapped it). */
static unsigned long long session_change_stamp(void)
{
	unsigned long long stamp = mailsuspend_light_change_stamp();

	return stamp != 0 ? stamp : mailsuspend_lazy_change_stamp();
}

bool mailsuspend_session_recheck_due(struct mailsuspend_recheck *state)
{
	/* Read before the lookup: a change applied after this read moves the
	   stamp again, so the next wake-up looks it up. */
	unsigned long long stamp = session_change_stamp();

	if (stamp != 0 && stamp == state->stamp &&
	    ++state->unchanged < MAILSUSPEND_FULL_RECHECK_EVERY)
		return FALSE;
	state->stamp = stamp;
	state->unchanged = 0;
	return TRUE;
}

void mailsuspend_session_recheck_mark(struct mailsuspend_recheck *state)
{
	state->stamp = session_change_stamp();
	state->unchanged = 0;
}

void mailsuspend_session_log_end(const struct mail_user *user,
				 const char *what,
				 const struct mailsuspend_result *result)
{
	const char *master = mailsuspend_session_master_user(user);
	const char *ip = mailsuspend_session_client_ip(user);

	e_info(user->event,
	       "mailsuspend: %s: %s%s%sservice=%s, scope=%s%s, rip=%s, reason=%s",
	       what, master == NULL ? "" : "master_user=",
	       master == NULL ? "" : master, master == NULL ? "" : ", ",
	       result->service, result->scope,
	       result->fail_policy ? " (store unavailable, fail policy)" : "",
	       ip == NULL ? "" : ip, result->text);
}

static void mailsuspend_session_start_user_created(struct mail_user *user)
{
	struct mailsuspend_result result;

	if (user->error != NULL ||
	    mailsuspend_session_master_user(user) == NULL)
		return;
	mailsuspend_session_check(user, &result);
	if (result.verdict != MAILSUSPEND_DENY)
		return;
	mailsuspend_session_log_end(user, "Session refused at start", &result);
	/* mail_user_init() fails with this error: the session never starts. */
	user->error = p_strdup_printf(user->pool, "mailsuspend: %s", result.text);
}

static struct mail_storage_hooks mailsuspend_session_start_hooks = {
	.mail_user_created = mailsuspend_session_start_user_created,
};

void mailsuspend_session_start_hooks_add(struct module *module)
{
	mail_storage_hooks_add(module, &mailsuspend_session_start_hooks);
}

void mailsuspend_session_start_hooks_remove(void)
{
	mail_storage_hooks_remove(&mailsuspend_session_start_hooks);
}
