/* libauthdb_mailsuspend.so: the "mailsuspend" passdb.

   Chained after the real passdb, it never verifies a password itself.  The
   real passdb verifies the password and continues (result_success =
   continue-ok); this passdb runs only for authenticated requests
   (skip = unauthenticated), asks the core whether the login is allowed and,
   if not, adds Dovecot's own "nologin" and "reason" fields.  Dovecot then
   answers exactly as for any nologin user: IMAP "NO [CONTACTADMIN] reason",
   POP3 "-ERR [AUTH] reason".  A wrong password never reaches this passdb,
   so it gets the normal failure.  The passdb has no cache key, so Dovecot's
   auth cache never stores its answer. */
#include "auth-common.h"
#include "auth.h"
#include "passdb.h"
#include "auth-fields.h"
#include "ioloop.h"
#include "net.h"
#include "module-dir.h"
#include "mailsuspend-dovecot.h"
#include "ms_light.h"

struct mailsuspend_passdb_module {
	struct passdb_module module;
	const char *config_path;
	struct mailsuspend_handle *handle;
	/* What the core logs (store unavailable, ...): a child of the auth
	   process's event, without a request (the handle serves them all). */
	struct event *event;
	struct timeout *to_check_chain;
};

const char *authdb_mailsuspend_version = DOVECOT_ABI_VERSION;
void authdb_mailsuspend_init(struct module *module);
void authdb_mailsuspend_deinit(void);

/* The address a webmail host connects from: with a trusted proxy that
   forwards the end user's address, that is the real remote IP. */
static const char *request_client_ip(const struct auth_request *request)
{
	const struct ip_addr *ip = &request->fields.real_remote_ip;

	if (ip->family == 0)
		ip = &request->fields.remote_ip;
	return ip->family == 0 ? NULL : net_ip2addr(ip);
}

/* The session's ticket (mailsuspend-light.h) as a userdb field: Dovecot
   keeps a passdb's userdb_ fields for the userdb reply, and the mail
   process sees it as a plugin setting. */
static void
mailsuspend_passdb_add_ticket(struct auth_request *request,
			      struct mailsuspend_passdb_module *module,
			      const char *protocol, const char *client_ip)
{
	char ticket[MS_TICKET_MAX];

	if (mailsuspend_session_ticket(module->handle, request->fields.user,
				       protocol, client_ip, ticket,
				       sizeof ticket) != 0) {
		auth_request_set_field(request, "userdb_" MS_TICKET_FIELD,
				       ticket, NULL);
	}
}

/* Asks the core; on a denial marks the request "nologin".  with_reason:
   also hand Dovecot the reply text.  Only safe once the password is known
   to be right: Dovecot drops "nologin" from a failure reply but keeps
   "reason", which would reveal the suspension to a wrong password. */
static void mailsuspend_passdb_apply(struct auth_request *request,
				     bool with_reason)
{
	struct mailsuspend_passdb_module *module =
		(struct mailsuspend_passdb_module *)request->passdb->passdb;
	struct mailsuspend_result result;
	const char *protocol = request->fields.service;
	const char *client_ip, *remote_ip, *judged = "";

	/* Which protocols are governed (not lmtp, lda, doveadm, ...) is the
	   core's decision: it allows what it does not govern. */
	client_ip = request_client_ip(request);
	mailsuspend_check_login(module->handle, request->fields.user, protocol,
				client_ip, &result);
	/* limits.login_ips_per_day counts only logins whose password is known
	   to be right: a challenge-response mechanism's (with_reason FALSE)
	   response is checked after this, so counting it would let anyone
	   without the password push a mailbox over the limit. */
	if (result.verdict != MAILSUSPEND_DENY && with_reason) {
		mailsuspend_count_login(module->handle, request->fields.user,
					protocol, client_ip, &result);
	}
	if (result.verdict != MAILSUSPEND_DENY) {
		mailsuspend_passdb_add_ticket(request, module, protocol, client_ip);
		return;
	}

	/* Dovecot's login processes act on proxy and host (a referral) before
	   they look at nologin: a front end whose real passdb proxies would
	   hand a suspended login to its backend.  A denied login goes nowhere. */
	if (request->fields.extra_fields != NULL) {
		auth_fields_remove(request->fields.extra_fields, "proxy");
		auth_fields_remove(request->fields.extra_fields, "proxy_maybe");
		auth_fields_remove(request->fields.extra_fields, "host");
	}
	auth_request_set_field(request, "nologin", "y", NULL);
	/* Counted here, where the login is refused: a challenge-response
	   mechanism (with_reason FALSE) counts before its response is known. */
	mailsuspend_count_event(module->handle, MAILSUSPEND_EVENT_LOGIN_DENIED,
				result.service);
	if (with_reason)
		auth_request_set_field(request, "reason", result.text, NULL);
	/* The passdb's event prefixes "mailsuspend(user,rip,<session>): "
	   (the passdb's name, if it has one, for "mailsuspend").  An Info line
	   of this passdb: the shipped config sets auth_verbose = yes on it.
	   The address the core judged is named when it is not rip (a trusted
	   proxy forwarded the end user's address). */
	remote_ip = net_ip2addr(&request->fields.remote_ip);
	if (client_ip != NULL && strcmp(client_ip, remote_ip) != 0)
		judged = t_strdup_printf(", real_rip=%s", client_ip);
	e_info(authdb_event(request),
	       "Login denied%s: service=%s, scope=%s%s%s, reason=%s",
	       with_reason ? "" : " if the response is right",
	       result.service, result.scope,
	       result.fail_policy ? " (store unavailable, fail policy)" : "",
	       judged, result.text);
}

/* This passdb must only ever see requests whose password a previous passdb
   already verified; anything else is a configuration error and must not
   become a way in. */
static bool mailsuspend_passdb_misplaced(struct auth_request *request)
{
	static bool logged = FALSE;

	if (request->fields.skip_password_check)
		return FALSE;
	if (!logged) {
		e_error(authdb_event(request),
			"passdb reached before the password was "
			"verified: put it after the real passdb, which needs "
			"result_success = continue-ok, and set "
			"skip = unauthenticated (refusing these logins)");
		logged = TRUE;
	}
	return TRUE;
}

static void
mailsuspend_verify_plain(struct auth_request *request,
			 const char *password ATTR_UNUSED,
			 verify_plain_callback_t *callback)
{
	if (mailsuspend_passdb_misplaced(request)) {
		callback(PASSDB_RESULT_USER_UNKNOWN, request);
		return;
	}
	mailsuspend_passdb_apply(request, TRUE);
	callback(PASSDB_RESULT_OK, request);
}

/* Challenge-response mechanisms (CRAM-MD5, SCRAM, ...): the mechanism
   checks the response only after this, so the denial carries no reason
   text (the client sees Dovecot's "Login disabled for this user").
   Returning no credentials makes Dovecot use the real passdb's. */
static void
mailsuspend_lookup_credentials(struct auth_request *request,
			       lookup_credentials_callback_t *callback)
{
	if (mailsuspend_passdb_misplaced(request)) {
		callback(PASSDB_RESULT_USER_UNKNOWN, uchar_empty_ptr, 0,
			 request);
		return;
	}
	mailsuspend_passdb_apply(request, FALSE);
	callback(PASSDB_RESULT_OK, uchar_empty_ptr, 0, request);
}

/* args: empty (default config), "PATH" or "config=PATH". */
static struct passdb_module *
mailsuspend_passdb_preinit(pool_t pool, const char *args)
{
	struct mailsuspend_passdb_module *module;

	module = p_new(pool, struct mailsuspend_passdb_module, 1);
	if (str_begins(args, "config="))
		args += strlen("config=");
	else if (str_begins(args, MAILSUSPEND_SETTING_CONFIG "="))
		args += strlen(MAILSUSPEND_SETTING_CONFIG "=");
	module->config_path = p_strdup(pool, args);
	/* No cache key: suspension must take effect on the next login. */
	module->module.default_cache_key = NULL;
	return &module->module;
}

static bool rule_continues(enum auth_db_rule rule)
{
	return rule == AUTH_DB_RULE_CONTINUE || rule == AUTH_DB_RULE_CONTINUE_OK;
}

/* Names a passdb in a log line: its name, else its driver and place in
   the chain (never its args: a static passdb's hold a password). */
static const char *
passdb_label(const struct auth_passdb *first, const struct auth_passdb *passdb)
{
	unsigned int place = 1;

	if (passdb->set->name[0] != '\0')
		return passdb->set->name;
	for (; first != NULL && first != passdb; first = first->next)
		place++;
	return t_strdup_printf("#%u, driver = %s", place, passdb->set->driver);
}

/* A passdb before ours that can end a login successfully (return-ok on any
   result) lets the users it verifies in without our check. */
static bool rule_returns_ok(const struct auth_passdb *passdb)
{
	return passdb->result_success == AUTH_DB_RULE_RETURN_OK ||
		passdb->result_failure == AUTH_DB_RULE_RETURN_OK ||
		passdb->result_internalfail == AUTH_DB_RULE_RETURN_OK;
}

/* A master passdb ends a master-user login ("user*master", SASL authzid)
   unless it continues to the regular passdbs (pass = yes, or
   result_success = continue/continue-ok).  The mail plugins refuse such
   sessions at their start, but only a login refused here gets Dovecot's
   usual reply. */
static void mailsuspend_passdb_check_masterdbs(const struct auth *auth)
{
	const struct auth_passdb *passdb;

	for (passdb = auth->masterdbs; passdb != NULL; passdb = passdb->next) {
		if (rule_continues(passdb->result_success))
			continue;
		e_error(auth_event,
			"mailsuspend: master passdb { %s } ends the login before "
			"the mailsuspend passdb: master-user logins of suspended "
			"users are only refused when their session starts "
			"(by the imap/pop3/sieve_mailsuspend mail plugins); add "
			"\"pass = yes\" to that master passdb so they are refused "
			"at login", passdb_label(auth->masterdbs, passdb));
	}
}

/* A successful password check reaches this passdb only when every passdb
   before it continues on success.  Say so at startup if not: such a
   config silently suspends nobody (or not those users). */
static void mailsuspend_passdb_check_chain(struct passdb_module *module)
{
	struct auth *auth = auth_default_service();
	const struct auth_passdb *passdb;
	bool reachable = FALSE;

	if (auth == NULL)
		return;
	for (passdb = auth->passdbs; passdb != NULL; passdb = passdb->next) {
		if (passdb->passdb == module)
			break;
		if (rule_continues(passdb->result_success))
			reachable = TRUE;
	}
	if (passdb == NULL)
		return; /* not in the default auth's chain (e.g. masterdb) */
	if (!reachable) {
		e_error(auth_event,
			"mailsuspend: no passdb before the mailsuspend passdb "
			"has result_success = continue-ok: suspended users "
			"can still log in (see 95-mailsuspend.conf)");
	}
	for (passdb = auth->passdbs; reachable && passdb->passdb != module;
	     passdb = passdb->next) {
		if (rule_returns_ok(passdb) && !passdb->set->deny) {
			e_error(auth_event,
				"mailsuspend: passdb { %s } before the "
				"mailsuspend passdb can end a login with "
				"return-ok: the users it lets in are never "
				"checked (use continue-ok)",
				passdb_label(auth->passdbs, passdb));
		}
	}
	if (passdb->skip != AUTH_PASSDB_SKIP_UNAUTHENTICATED) {
		e_error(auth_event,
			"mailsuspend: the mailsuspend passdb needs "
			"skip = unauthenticated");
	}
	mailsuspend_passdb_check_masterdbs(auth);
}

static void mailsuspend_passdb_check_chain_now(struct passdb_module *_module)
{
	struct mailsuspend_passdb_module *module =
		(struct mailsuspend_passdb_module *)_module;

	timeout_remove(&module->to_check_chain);
	mailsuspend_passdb_check_chain(_module);
}

static void mailsuspend_passdb_init(struct passdb_module *_module)
{
	struct mailsuspend_passdb_module *module =
		(struct mailsuspend_passdb_module *)_module;
	const char *error = NULL;

	/* Checked from the ioloop: lines logged during auth's init are only
	   delivered to the log when the process exits. */
	module->to_check_chain = timeout_add_short(0,
		mailsuspend_passdb_check_chain_now, _module);
	/* A missing store or bad config is not fatal: the handle applies
	   store.fail_policy and the first lookup logs why (once). */
	module->event = event_create(auth_event);
	module->handle = mailsuspend_open(module->config_path[0] == '\0' ?
					  NULL : module->config_path,
					  mailsuspend_dovecot_log, module->event,
					  &error);
	if (module->handle == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "mailsuspend: out of memory");
}

static void mailsuspend_passdb_deinit(struct passdb_module *_module)
{
	struct mailsuspend_passdb_module *module =
		(struct mailsuspend_passdb_module *)_module;

	timeout_remove(&module->to_check_chain);
	mailsuspend_close(&module->handle);
	event_unref(&module->event);
}

static struct passdb_module_interface passdb_mailsuspend = {
	.name = "mailsuspend",
	.preinit = mailsuspend_passdb_preinit,
	.init = mailsuspend_passdb_init,
	.deinit = mailsuspend_passdb_deinit,
	.verify_plain = mailsuspend_verify_plain,
	.lookup_credentials = mailsuspend_lookup_credentials,
};

void authdb_mailsuspend_init(struct module *module ATTR_UNUSED)
{
	passdb_register_module(&passdb_mailsuspend);
}

void authdb_mailsuspend_deinit(void)
{
	passdb_unregister_module(&passdb_mailsuspend);
}
