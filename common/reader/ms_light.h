/* The light reader: what a Dovecot mail process needs to re-check a live
   session, in C and libc only, so a session held past its first re-check
   maps no C++ core (dovecot-plugin/mailsuspend-lazy.h).

   The auth process, which runs the whole core, hands each session it lets
   in a ticket (mailsuspend_session_ticket(), passed as the userdb field
   MS_TICKET_FIELD): the service the login was judged as, the normalised
   key and the store's directory.  The session maps that store and asks the
   one question a re-check asks most: does anything flag this service for
   this mailbox or its domain?  No: allowed, decided here.  Anything else (a
   flag, whose expiry, reply text and scope the full rules decide; a store
   that cannot be read, where the fail policy decides) is the core's to
   answer: MS_LIGHT_ASK_CORE. */
#ifndef MS_LIGHT_H
#define MS_LIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "ms_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The userdb field that carries the ticket to the mail process. */
#define MS_TICKET_FIELD "mailsuspend_ticket"
/* Longest ticket, NUL included. */
#define MS_TICKET_MAX 1024

enum ms_light_answer {
	MS_LIGHT_ALLOWED = 0,  /* nothing flags the service: carry on */
	MS_LIGHT_ASK_CORE = 1, /* the full rules must decide */
};

struct ms_ticket {
	enum ms_service service;
	const char *key;       /* "user@example.com", or "@example.com" */
	size_t key_len;
	const char *store_dir;
};

/* Writes the ticket for (service, key, store_dir) into buf; 0 when it does
   not fit (or a part is unusable: then the session asks the core). */
int ms_ticket_format(char *buf, size_t size, enum ms_service service,
		     const char *key, size_t key_len, const char *store_dir);

/* Parses a ticket (pointing into it); 0 when it is not one. */
int ms_ticket_parse(const char *ticket, struct ms_ticket *ticket_r);

struct ms_light;

/* A reader of the store in store_dir (copied), mapped on first use.  NULL
   only when out of memory. */
struct ms_light *ms_light_open(const char *store_dir);
void ms_light_close(struct ms_light **light);

/* Does anything flag service for key (and, for a mailbox, its domain)? */
enum ms_light_answer ms_light_check(struct ms_light *light, const char *key, size_t key_len,
				    enum ms_service service);

/* The store's change stamp (ms_change_stamp), mapping it if need be; 0 when
   it cannot be read. */
uint64_t ms_light_change_stamp(struct ms_light *light);

/* Why the last answer was MS_LIGHT_ASK_CORE for want of a readable store
   ("" otherwise): for a debug line; the core logs the outage itself. */
const char *ms_light_error(const struct ms_light *light);

#ifdef __cplusplus
}
#endif

#endif
