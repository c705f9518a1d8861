/* lib95_pop3_mailsuspend_plugin.so: ends a live POP3 session whose service
   became suspended.

   POP3 has no command hook, so the core is asked once a second.  When the
   answer is "suspended" the client gets "-ERR <reason>" (unless a
   multi-line reply is being sent) and the connection is closed.  Only this
   session's service is asked about. */
#include "pop3-common.h"
#include "ioloop.h"
#include "module-context.h"
#include "net.h"
#include "mail-user.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"

#define MAILSUSPEND_RECHECK_MSECS 1000

#define MAILSUSPEND_POP3_CONTEXT(obj) \
	MODULE_CONTEXT(obj, pop3_mailsuspend_pop3_module)

struct mailsuspend_pop3_client {
	union pop3_module_context module_ctx;
	struct timeout *to_recheck;
	const char *client_ip; /* NULL when unknown */
	const char *config_path;
};

const char *pop3_mailsuspend_plugin_version = DOVECOT_ABI_VERSION;
const char pop3_mailsuspend_plugin_binary_dependency[] = "pop3";
void pop3_mailsuspend_plugin_init(struct module *module);
void pop3_mailsuspend_plugin_deinit(void);

static struct module *pop3_mailsuspend_module;
static pop3_client_created_func_t *next_hook_client_created;

static MODULE_CONTEXT_DEFINE_INIT(pop3_mailsuspend_pop3_module,
				  &pop3_module_register);

static void pop3_session_recheck(struct client *client)
{
	struct mailsuspend_pop3_client *mclient =
		MAILSUSPEND_POP3_CONTEXT(client);
	struct mailsuspend_result result;

	if (mclient == NULL || client->disconnected)
		return;
	mailsuspend_lazy_check_login(mclient->config_path,
				     client->user->username, "pop3",
				     mclient->client_ip, &result);
	if (result.verdict != MAILSUSPEND_DENY)
		return;

	mailsuspend_lazy_count_event(MAILSUSPEND_EVENT_SESSION_ENDED, result.service);
	i_info("mailsuspend: Session ended: service=%s, scope=%s%s, rip=%s, reason=%s",
	       result.service, result.scope,
	       result.fail_policy ? " (store unavailable, fail policy)" : "",
	       mclient->client_ip == NULL ? "" : mclient->client_ip,
	       result.text);
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

	timeout_remove(&mclient->to_recheck);
	mclient->module_ctx.super.destroy(client, reason);
}

static void mailsuspend_pop3_client_created(struct client **clientp)
{
	struct client *client = *clientp;
	struct mailsuspend_pop3_client *mclient;
	const struct ip_addr *ip = client->user->conn.remote_ip;

	if (mail_user_is_plugin_loaded(client->user, pop3_mailsuspend_module)) {
		mclient = p_new(client->pool, struct mailsuspend_pop3_client, 1);
		mclient->config_path = p_strdup(client->pool,
			mail_user_plugin_getenv(client->user,
						MAILSUSPEND_SETTING_CONFIG));
		mclient->module_ctx.super = client->v;
		client->v.destroy = mailsuspend_pop3_client_destroy;
		if (ip != NULL && ip->family != 0)
			mclient->client_ip = p_strdup(client->pool, net_ip2addr(ip));
		mclient->to_recheck = timeout_add(MAILSUSPEND_RECHECK_MSECS,
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
	next_hook_client_created =
		pop3_client_created_hook_set(mailsuspend_pop3_client_created);
}

void pop3_mailsuspend_plugin_deinit(void)
{
	pop3_client_created_hook_set(next_hook_client_created);
	mailsuspend_lazy_deinit();
}
