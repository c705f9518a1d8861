/* lib95_imap_mailsuspend_plugin.so: ends a live IMAP session whose service
   became suspended.

   The session is re-checked (mailsuspend-live.h) 3 s after login, then
   whenever a writer changed the store (a push through inotify; a 3 s timer
   where that is unavailable), so a client sitting in IDLE is ended too;
   from the first check on also before every command, when the store's
   change stamp moved since the session's last check.  Until the first
   check the passdb's answer at login stands: that keeps short sessions (a
   webmail request) from paying for loading the core (see
   mailsuspend-lazy.h).  When the answer is "suspended" the client gets
   "* BYE [ALERT] <reason>" and the connection is closed; the command that
   triggered the check is not executed.  Sessions of services that are not
   suspended (POP3, or IMAP while only "send" is suspended) are left alone
   because the core is asked about this session's service only. */
#include "imap-common.h"
#include "imap-commands.h"
#include "ioloop.h"
#include "module-context.h"
#include "net.h"
#include "mail-user.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"
#include "mailsuspend-light.h"
#include "mailsuspend-live.h"
#include "mailsuspend-session.h"

#define MAILSUSPEND_IMAP_CONTEXT(obj) \
	MODULE_CONTEXT(obj, imap_mailsuspend_imap_module)

struct mailsuspend_imap_client {
	union imap_module_context module_ctx;
	struct mailsuspend_live live;
	struct timeout *to_start; /* master-user login: checked at once */
	bool login_check_stale; /* set by the first re-check */
};

const char *imap_mailsuspend_plugin_version = DOVECOT_ABI_VERSION;
const char imap_mailsuspend_plugin_binary_dependency[] = "imap";
void imap_mailsuspend_plugin_init(struct module *module);
void imap_mailsuspend_plugin_deinit(void);

static struct module *imap_mailsuspend_module;
static imap_client_created_func_t *next_hook_client_created;

static MODULE_CONTEXT_DEFINE_INIT(imap_mailsuspend_imap_module,
				  &imap_module_register);

static bool imap_session_suspended(struct client *client,
				   struct mailsuspend_result *result_r)
{
	mailsuspend_session_check(client->user, result_r);
	return result_r->verdict == MAILSUSPEND_DENY;
}

static void imap_session_end(struct client *client, const char *what,
			     const struct mailsuspend_result *result)
{
	mailsuspend_lazy_count_event(MAILSUSPEND_EVENT_SESSION_ENDED, result->service);
	mailsuspend_session_log_end(client->user, what, result);
	/* Like Dovecot's own client_kick(): no BYE while a command owns the
	   output (half-way through a FETCH literal it would be read as data). */
	if (client->output_cmd_lock == NULL)
		client_send_line(client, t_strconcat("* BYE [ALERT] ",
						     result->text, NULL));
	client_disconnect(client, t_strconcat("[ALERT] ", result->text, NULL));
}

static void imap_session_recheck(void *context)
{
	struct client *client = context;
	struct mailsuspend_imap_client *mclient =
		MAILSUSPEND_IMAP_CONTEXT(client);
	struct mailsuspend_result result;

	if (mclient == NULL || client->disconnected)
		return;
	mclient->login_check_stale = TRUE;
	if (imap_session_suspended(client, &result))
		imap_session_end(client, "Session ended", &result);
}

/* A master-user login skipped the passdb: checked right after Dovecot's
   tagged OK, before the client's first command (which the command hook
   would refuse anyway: login_check_stale is set from the start). */
static void imap_session_start_check(struct client *client)
{
	struct mailsuspend_imap_client *mclient =
		MAILSUSPEND_IMAP_CONTEXT(client);
	struct mailsuspend_result result;

	timeout_remove(&mclient->to_start);
	if (client->disconnected)
		return;
	if (imap_session_suspended(client, &result))
		imap_session_end(client, "Session refused at start", &result);
}

static bool cmd_mailsuspend_skipped(struct client_command_context *cmd ATTR_UNUSED)
{
	return TRUE;
}

/* A command that has not started yet can simply be dropped.  One already
   running (a continuation) is left to Dovecot, which cancels it cleanly
   while destroying the disconnected client. */
static bool command_not_started(const struct client_command_context *cmd)
{
	const struct command *command = command_find(cmd->name);

	return command != NULL && command->func == cmd->func &&
		cmd->context == NULL;
}

static void mailsuspend_command_pre(struct client_command_context *cmd)
{
	struct client *client = cmd->client;
	struct mailsuspend_imap_client *mclient =
		MAILSUSPEND_IMAP_CONTEXT(client);
	struct mailsuspend_result result;

	if (mclient == NULL || client->disconnected ||
	    !mclient->login_check_stale ||
	    !mailsuspend_session_recheck_due(&mclient->live.recheck))
		return;
	if (!imap_session_suspended(client, &result))
		return;
	if (command_not_started(cmd))
		cmd->func = cmd_mailsuspend_skipped;
	imap_session_end(client, mclient->to_start != NULL ?
			 "Session refused at start" : "Session ended", &result);
}

static void mailsuspend_command_post(struct client_command_context *cmd ATTR_UNUSED)
{
}

static void mailsuspend_imap_client_destroy(struct client *client,
					    const char *reason)
{
	struct mailsuspend_imap_client *mclient =
		MAILSUSPEND_IMAP_CONTEXT(client);

	mailsuspend_live_stop(&mclient->live);
	timeout_remove(&mclient->to_start);
	mclient->module_ctx.super.destroy(client, reason);
}

static void mailsuspend_imap_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct mailsuspend_imap_client *mclient;

	if (mail_user_is_plugin_loaded(client->user, imap_mailsuspend_module)) {
		mclient = p_new(client->pool, struct mailsuspend_imap_client, 1);
		mclient->module_ctx.super = client->v;
		client->v.destroy = mailsuspend_imap_client_destroy;
		mailsuspend_live_start(&mclient->live, client->user,
				       imap_session_recheck, client);
		if (mailsuspend_session_master_user(client->user) != NULL) {
			mclient->login_check_stale = TRUE;
			mclient->to_start = timeout_add_short(0,
				imap_session_start_check, client);
		}
		MODULE_CONTEXT_SET(client, imap_mailsuspend_imap_module, mclient);
	}
	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

void imap_mailsuspend_plugin_init(struct module *module)
{
	imap_mailsuspend_module = module;
	mailsuspend_lazy_init(module);
	command_hook_register(mailsuspend_command_pre, mailsuspend_command_post);
	next_hook_client_created =
		imap_client_created_hook_set(mailsuspend_imap_client_created);
}

void imap_mailsuspend_plugin_deinit(void)
{
	command_hook_unregister(mailsuspend_command_pre,
				mailsuspend_command_post);
	imap_client_created_hook_set(next_hook_client_created);
	mailsuspend_lazy_deinit();
	mailsuspend_light_deinit();
}
