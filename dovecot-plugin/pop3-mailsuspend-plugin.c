/* lib95_pop3_mailsuspend_plugin.so: ends a live POP3 session whose service
   became suspended.

   POP3 has no command hook: the session is re-checked 3 s after login,
   then whenever a writer changed the store (a push through inotify; a 3 s
   timer where that is unavailable: mailsuspend-live.h).  When the
   answer is "suspended" the client gets "-ERR <reason>" (unless a
   multi-line reply is being sent) and the connection is closed.  Only this
   session's service is asked about.  A master-user login (which skips the
   passdb) of a suspended service never starts: see mailsuspend-session.h. */
#include "pop3-common.h"
#include "ioloop.h"
#include "module-context.h"
#include "net.h"
#include "mail-user.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"
#include "mailsuspend-light.h"
#include "mailsuspend-live.h"
#include "mailsuspend-session.h"

#define MAILSUSPEND_POP3_CONTEXT(obj) \
	MODULE_CONTEXT(obj, pop3_mailsuspend_pop3_module)

struct mailsuspend_pop3_client {
	union pop3_module_context module_ctx;
	struct mailsuspend_live live;
};

const char *pop3_mailsuspend_plugin_version = DOVECOT_ABI_VERSION;
const char pop3_mailsuspend_plugin_binary_dependency[] = "pop3";
void pop3_mailsuspend_plugin_init(struct module *module);
void pop3_mailsuspend_plugin_deinit(void);

static struct module *pop3_mailsuspend_module;
static pop3_client_created_func_t *next_hook_client_created;

static MODULE_CONTEXT_DEFINE_INIT(pop3_mailsuspend_pop3_module,
				  &pop3_module_register);

static void pop3_session_recheck(void *context)
{
	struct client *client = context;
	struct mailsuspend_result result;

	if (client->disconnected)
		return;
	mailsuspend_session_check(client->user, &result);
	if (result.verdict != MAILSUSPEND_DENY)
		return;
	mailsuspend_lazy_count_event(MAILSUSPEND_EVENT_SESSION_ENDED, result.service);
	mailsuspend_session_log_end(client->user, "Session ended", &result);
	/* In the middle of a multi-line reply (RETR, TOP, LIST, UIDL) a
	   status line would read as message data: just close then. */
	if (client->cmd == NULL)
		client_send_line(client, "-ERR %s", result.text);
	client_disconnect(client, "Account suspended");
}

static void mailsuspend_pop3_client_destroy(struct client *client,
					    const char *reason)
{
	struct mailsuspend_pop3_client *mclient =
		MAILSUSPEND_POP3_CONTEXT(client);

	mailsuspend_live_stop(&mclient->live);
	mclient->module_ctx.super.destroy(client, reason);
}

static void mailsuspend_pop3_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct mailsuspend_pop3_client *mclient;

	if (mail_user_is_plugin_loaded(client->user, pop3_mailsuspend_module)) {
		mclient = p_new(client->pool, struct mailsuspend_pop3_client, 1);
		mclient->module_ctx.super = client->v;
		client->v.destroy = mailsuspend_pop3_client_destroy;
		mailsuspend_live_start(&mclient->live, client->user,
				       pop3_session_recheck, client);
		MODULE_CONTEXT_SET(client, pop3_mailsuspend_pop3_module, mclient);
	}
	if (next_hook_client_created != NULL)
		next_hook_client_created(clientp);
}

void pop3_mailsuspend_plugin_init(struct module *module)
{
	pop3_mailsuspend_module = module;
	mailsuspend_lazy_init(module);
	mailsuspend_session_start_hooks_add(module);
	next_hook_client_created =
		pop3_client_created_hook_set(mailsuspend_pop3_client_created);
}

void pop3_mailsuspend_plugin_deinit(void)
{
	pop3_client_created_hook_set(next_hook_client_created);
	mailsuspend_session_start_hooks_remove();
	mailsuspend_lazy_deinit();
	mailsuspend_light_deinit();
}
