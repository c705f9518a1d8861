/* mailsuspend: the C API the mail-host modules (Dovecot, Exim) call.
 *
 * Every rule lives behind these calls; host glue only translates a host
 * event into one call and the answer into the host's reply.  Nothing here
 * throws, aborts or runs an external program, and nothing waits without a
 * bound: a store that cannot be read becomes the configured fail policy
 * (result->fail_policy = 1) and one log line through the logger given to
 * mailsuspend_open().  The one call that changes the store
 * (mailsuspend_count_message) has the change made by a detached process
 * (forked twice, never waited for to end) and waits
 * store.host_write_wait_ms at most for it: a held writer lock or a slow
 * disk holds up no reply, the decision is returned at once, and a change
 * the lock keeps out (store.host_lock_wait_ms) goes to the store's outbox
 * for the next writer, in force for the send checks meanwhile.
 *
 * Open once per process and keep the handle; lookups allocate nothing and
 * make no system calls in the common case.  Not thread-safe per handle
 * (Dovecot and Exim processes are single-threaded).
 */
#ifndef MAILSUSPEND_H
#define MAILSUSPEND_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MAILSUSPEND_DEFAULT_CONFIG "/etc/mailsuspend/mailsuspend.conf"
/* Longest reply text handed to a host, NUL included. */
#define MAILSUSPEND_TEXT_MAX 512

struct mailsuspend_handle;

enum mailsuspend_log_level {
	MAILSUSPEND_LOG_INFO = 0,
	MAILSUSPEND_LOG_WARNING = 1,
	MAILSUSPEND_LOG_ERROR = 2,
};

/* The host's logger; msg is one line without CR/LF.  ctx is the host's. */
typedef void mailsuspend_log_func_t(void *ctx, enum mailsuspend_log_level level,
				    const char *msg);

enum mailsuspend_verdict {
	MAILSUSPEND_ALLOW = 0, /* not suspended: carry on */
	MAILSUSPEND_DENY = 1,  /* suspended: refuse with result->text */
};

/* What to do with mail for a recipient (mailsuspend_check_receive). */
enum mailsuspend_mode {
	MAILSUSPEND_MODE_DELIVER = 0, /* deliver normally */
	MAILSUSPEND_MODE_DISCARD = 1, /* accept and drop */
	MAILSUSPEND_MODE_REJECT = 2,  /* refuse at RCPT with 550 5.2.1 */
	MAILSUSPEND_MODE_QUEUE = 3,   /* hold: defer while suspended */
	MAILSUSPEND_MODE_EXPIRED = 4, /* held longer than delivery.queue_expiry: bounce */
};

struct mailsuspend_result {
	enum mailsuspend_verdict verdict;
	enum mailsuspend_mode mode;  /* receive checks only; DELIVER otherwise */
	const char *service;         /* service decided on, e.g. "webmail" for an
					IMAP login from a webmail host (static) */
	const char *scope;           /* "mailbox", "domain", "ip" (a client IP
				   throttled: status 4.7.1, temporary), or
				   "none" (static) */
	int fail_policy;             /* 1: the store could not be read and
					store.fail_policy decided */
	int fail_queued;             /* send checks: the admin asked that mail
					already queued from this sender fail */
	int hold;                    /* send checks, with verdict DENY: accept
					the message and hold it in the queue
					(mailsuspend_held_mark) instead of
					refusing it; nothing of it is
					delivered while held */
	const char *status;          /* RFC 3463 enhanced status of an SMTP
					refusal: "5.7.13" (sending suspended),
					"5.5.3" (too many recipients), "5.2.1"
					(mailbox suspended); "" otherwise (static) */
	/* Reply text: the configured message, plus the admin's reason when
	   messages.include_reason is on.  Printable, never CR/LF. */
	char text[MAILSUSPEND_TEXT_MAX];
};

/* Opens the config and the store.  Always returns a usable handle (NULL
   only when out of memory): on trouble *error_r says what (log it once) and
   lookups apply the fail policy until the store can be opened; the handle
   retries at most once a second.  config_path NULL means the default path.
   log may be NULL. */
struct mailsuspend_handle *mailsuspend_open(const char *config_path,
				     mailsuspend_log_func_t *log, void *log_ctx,
				     const char **error_r);
void mailsuspend_close(struct mailsuspend_handle **ms);

/* Login by user (an address, or a bare name if address.default_domain is
   set) over protocol "imap", "pop3" or "sieve"; client_ip may be NULL.
   From a webmail.hosts address, imap/pop3 logins are governed by the
   "webmail" service instead. */
void mailsuspend_check_login(struct mailsuspend_handle *ms, const char *user,
			     const char *protocol, const char *client_ip,
			     struct mailsuspend_result *result_r);

/* A login of user over protocol from client_ip that the host let in (after
   mailsuspend_check_login allowed it), for limits.login_ips_per_day.  Does
   nothing when the limit is 0, for a webmail host, without client_ip, or
   for protocols check_login does not govern.  A (user, client_ip) pair not
   seen within the 24 hours before counts one; the login that would take
   the count past the limit hands an automatic suspension to the store's
   outbox (source rate, applied by the next writer: any mailsuspend
   command, the sweep timer): "send", or with limits.login_ips_action =
   "logins" send and every login service, in which case this login is
   DENY too (messages.login_ips), as is every later one of user while that
   suspension waits in the outbox.  No lock, no wait; no system call unless
   the limit is crossed or reached.  Meant for Dovecot's auth process, which
   alone may write <store>/logins (store.login_group). */
void mailsuspend_count_login(struct mailsuspend_handle *ms, const char *user,
			     const char *protocol, const char *client_ip,
			     struct mailsuspend_result *result_r);

/* Sending as sender (the identity mailsuspend_sending_identity() names:
   authenticated id or envelope sender).  Checks "send",
   and "webmail_send" too when client_ip is a webmail host. */
void mailsuspend_check_send(struct mailsuspend_handle *ms, const char *sender,
			    const char *client_ip,
			    struct mailsuspend_result *result_r);

/* Mail for recipient.  message_age is the seconds the message has been
   queued (0 at SMTP time); past delivery.queue_expiry a queue-mode
   recipient gets MAILSUSPEND_MODE_EXPIRED. */
void mailsuspend_check_receive(struct mailsuspend_handle *ms, const char *recipient,
			       long message_age,
			       struct mailsuspend_result *result_r);

/* A message held for sender (result->hold of its send check) carries this
   mark followed by sender as its $local_scan_data (Exim keeps it in the
   spool); `mailsuspend held` and `release` find it by that. */
const char *mailsuspend_held_mark(void);

/* A held message (its mark) at delivery, sent by sender from client_ip,
   queued for message_age seconds: DENY with mode QUEUE (defer it) while
   the sender's send stays suspended, EXPIRED past delivery.queue_expiry
   (bounce it with result->text); ALLOW once lifted (deliver it). */
void mailsuspend_check_held(struct mailsuspend_handle *ms, const char *sender,
			    const char *client_ip, long message_age,
			    struct mailsuspend_result *result_r);

/* Is service (by name) of user suspended?  For callers with their own
   service mapping (e.g. a periodic re-check of a live session). */
void mailsuspend_check_service(struct mailsuspend_handle *ms, const char *user,
			       const char *service, const char *client_ip,
			       struct mailsuspend_result *result_r);

/* A number that changes whenever the store changes (any writer, a rebuilt
   generation); 0 when the store is not open.  One read of the shared
   mapping, no system call, no allocation: a host re-checking long-lived
   sessions calls the check functions only when it changed since its last
   check (and now and then regardless: a store file replaced or overwritten
   in place, rather than changed by a writer, does not move it). */
unsigned long long mailsuspend_change_stamp(struct mailsuspend_handle *ms);

/* The store's notify file (<store.path>/changed), which every writer
   writes after each change it applies: a long-lived host process watches
   it (inotify: IN_MODIFY) and re-checks its sessions when it fires,
   instead of polling the change stamp.  NULL without a handle.  The string
   lives as long as the handle. */
const char *mailsuspend_notify_path(struct mailsuspend_handle *ms);

/* 1 when client_ip is in webmail.hosts, else 0 (also for NULL or an
   unreadable config).  Lets a host tell a webmail submission that did not
   authenticate from inbound mail, without knowing the host list itself. */
int mailsuspend_is_webmail_host(struct mailsuspend_handle *ms, const char *client_ip);

/* Who sends a message, in the sense of the "send" suspension and the rate
   limits: the identity to pass to mailsuspend_check_send() and
   mailsuspend_count_message(), from what an SMTP host knows of it:
    - a client that authenticated (SMTP AUTH): auth_id;
    - otherwise a local submission (sendmail, exim -bs: client_ip NULL or
      "") or a webmail.hosts client: envelope_sender;
    - otherwise inbound mail from elsewhere, or a bounce (empty envelope
      sender) not authenticated: NULL, nobody to check.
   Returns one of the arguments themselves (no copy), or NULL. */
const char *mailsuspend_sending_identity(struct mailsuspend_handle *ms, const char *auth_id,
					 const char *envelope_sender, const char *client_ip);

/* Copies the configured text for key ("unavailable", "send_suspended",
   "rate_suspended", "receive_rejected", "recipients_per_message") into
   buf.  Returns 0, or -1 for an unknown key. */
int mailsuspend_message(struct mailsuspend_handle *ms, const char *key, char *buf,
			size_t size);

/* ---- Metrics (`mailsuspend metrics`) ----
   The core counts what it decides and applies by itself (sends refused,
   automatic suspensions, fail-policy decisions, spam reports).  A host
   reports the events only it sees happen: */
enum mailsuspend_event {
	/* A login refused (the Dovecot passdb).  label: result->service. */
	MAILSUSPEND_EVENT_LOGIN_DENIED = 0,
	/* A live session ended because its service was suspended (imap and
	   pop3 plugins).  label: result->service. */
	MAILSUSPEND_EVENT_SESSION_ENDED = 1,
	/* A recipient's mail handled in a receive mode (Exim), once where the
	   mode is applied: label "deliver", "discard", "reject", "queue" (one
	   per deferral) or "expired" (bounced after delivery.queue_expiry). */
	MAILSUSPEND_EVENT_RECEIVED = 2,
};

/* Counts one event: one relaxed atomic add in a shared counters file
   (<store.path>/metrics-dovecot or metrics-exim, by event), mapped on the
   handle's first count; no lock, no system call after that.  A file that
   cannot be mapped is logged once and nothing is counted; an unknown event
   or label is ignored.  Never fails the caller. */
void mailsuspend_count_event(struct mailsuspend_handle *ms, enum mailsuspend_event event,
			     const char *label);

/* The ticket with which a Dovecot mail process re-checks a live session
   without loading the core (common/reader/ms_light.h): the service a login
   by user over protocol from client_ip is judged as, its normalised key and
   the store's directory, as mailsuspend_check_login() would look them up.
   Writes it into buf and returns 1; 0 when there is none (a protocol that
   is not checked, a name that is no key, no usable config, buf too small):
   the session then asks the core.  The auth passdb passes it to the
   session as a userdb field. */
int mailsuspend_session_ticket(struct mailsuspend_handle *ms, const char *user,
			       const char *protocol, const char *client_ip,
			       char *buf, size_t size);

/* The core turns a SIGBUS from a store, counters or metrics file cut short
   under its mapping into an error (one log line, the fail policy), with a
   SIGBUS handler it installs once per process.  A host that replaces that
   handler later (Exim does, around local_scan, and resets it to the default
   afterwards) calls this to put the core's handler back in front; the
   replaced handler still gets every SIGBUS the core does not expect.  One
   system call to look, a second only when it must re-install. */
void mailsuspend_reclaim_sigbus(void);

/* ---- Automatic suspension policies (issue 5; docs/design.md) ---- */

/* The header the Exim module adds to outgoing mail; its value comes from
   mailsuspend_sender_token().  At most MAILSUSPEND_TOKEN_MAX octets, NUL
   included. */
#define MAILSUSPEND_TOKEN_HEADER "X-Mailsuspend-Token"
#define MAILSUSPEND_TOKEN_MAX 512

/* One outgoing message from sender (the same identity as for
   mailsuspend_check_send) with its recipients (envelope addresses; the core
   decides which are off-domain: a domain other than the sender's).
   First exactly mailsuspend_check_send's answer; when that allows, the rate
   limits (limits.*):
   - more than recipients_per_message recipients: DENY with the
     recipients_per_message text, nothing counted;
   - the message takes messages_per_day, offdomain_recipients_per_day or
     offdomain_recipients_per_hour_per_ip over: DENY with the rate_suspended
     text, nothing counted, and "send" of sender suspended (source rate,
     limits.suspend_for; locked without expiry after limits.escalate_after
     automatic suspensions within 30 days) -- committed to the store by a
     detached writer (above), audited with actor "exim", AUP notice marked
     pending;
   - the message takes its domain over domain_messages_per_hour or
     domain_offdomain_recipients_per_day (sums over the domain's
     mailboxes): the same, but DENY with the domain_rate_suspended text,
     scope "domain", and "send" of the domain suspended;
   - else ALLOW and the message is counted.
   While send is rate-suspended, each call (recipient_count may be 0: a
   refused MAIL FROM) extends the suspension (limits.extend_on_attempt).
   client_ip NULL or a webmail.hosts address: no per-IP count.  Counts
   are exact under any number of concurrent processes.  The allowed path
   makes no system call and no allocation for ASCII addresses. */
void mailsuspend_count_message(struct mailsuspend_handle *ms, const char *sender,
			       const char *client_ip,
			       const char *const *recipients, unsigned recipient_count,
			       struct mailsuspend_result *result_r);

/* One recipient of a message from sender (the same identity as for
   mailsuspend_check_send) that the host refused at RCPT as non-existent
   (Exim: verify = recipient failed to route it).  Counted against
   limits.unknown_recipients_per_hour (nothing when 0, or when send is
   already suspended); the one that would take the hour over suspends
   "send" of sender exactly as a crossing message does (source rate, the
   unknown_recipients text, audited, AUP notice pending).  Returns 1 when
   this call suspended (or handed the suspension on), else 0. */
int mailsuspend_count_unknown_recipient(struct mailsuspend_handle *ms, const char *sender,
					const char *client_ip);

/* 1 when limits.unknown_recipients_per_hour is on (the host then verifies
   recipients to find the non-existent ones), else 0. */
int mailsuspend_counts_unknown_recipients(struct mailsuspend_handle *ms);

/* What became of one recipient at a delivery attempt. */
enum mailsuspend_outcome {
	MAILSUSPEND_OUTCOME_DELIVERED = 0,
	MAILSUSPEND_OUTCOME_BOUNCED = 1,
	MAILSUSPEND_OUTCOME_DEFERRED = 2,
};

/* One remote recipient of a message from sender (the same identity as for
   mailsuspend_check_send) came to outcome at a delivery attempt (Exim: the
   delivery events); first_attempt: the message's first delivery attempt
   (retries count nothing).  Counted for the mailbox and for its domain
   against limits.failed_share_percent (nothing when 0, or when send is
   already suspended; deferrals once per recipient domain and hour, see
   policy.hpp); a share over the limit suspends "send" of the mailbox, or
   of the domain (scope domain), as a crossing message does (source rate,
   the failed_share text, audited, AUP notice pending).  Returns 1 when this
   call suspended (or handed the suspension on), else 0. */
int mailsuspend_count_delivery_outcome(struct mailsuspend_handle *ms, const char *sender,
				       const char *client_ip, const char *recipient,
				       enum mailsuspend_outcome outcome, int first_attempt);

/* 1 when limits.failed_share_percent is on (the host then reports delivery
   outcomes), else 0. */
int mailsuspend_counts_delivery_outcomes(struct mailsuspend_handle *ms);

/* Keeps text (a message: header and body, or its first part) as evidence
   for sender under <store.path>/evidence/, at most spam.evidence_samples
   per mailbox (further ones are dropped), each cut at 128 KiB.  Sends
   nothing and runs no child process: the AUP notice that the suspension
   marked pending goes out (with these samples) from `mailsuspend sweep`
   (the timer, every minute) or `mailsuspend send-notices`.
   Returns 1 kept, 0 not kept (bound reached, evidence_samples = 0, bad
   sender), -1 on error (logged). */
int mailsuspend_keep_sample(struct mailsuspend_handle *ms, const char *sender,
			    const char *text, size_t len);

/* Writes the MAILSUSPEND_TOKEN_HEADER value for account (the authenticated
   id: an address, or a bare name with address.default_domain) into buf,
   NUL-terminated.  Returns its length, or -1 (no key file <store.path>/
   token.key -- logged once --, invalid account, or size too small). */
int mailsuspend_sender_token(struct mailsuspend_handle *ms, const char *account,
			     char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
