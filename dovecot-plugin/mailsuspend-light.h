/* Re-checks of a live session without the core (common/reader/ms_light.h).

   The auth passdb hands every session it lets in a ticket (the userdb field
   MS_TICKET_FIELD): the service, the normalised key, the store.  With it, a
   re-check that finds nothing flagged (nearly every one) is answered here
   from the store's mapping by the C reader, and a session that lives on
   never maps the core module.  Without a ticket (a master-user login that
   skipped the passdb, a session started before an upgrade) or with any
   other answer, the caller asks the core (mailsuspend-lazy.h). */
#ifndef MAILSUSPEND_LIGHT_H
#define MAILSUSPEND_LIGHT_H

struct mail_user;

/* TRUE when user's ticket says nothing flags the session's service now. */
bool mailsuspend_light_allows(struct mail_user *user);

/* <store>/changed of user's ticket; NULL without a ticket. */
const char *mailsuspend_light_notify_path(struct mail_user *user);

/* The change stamp of the store the light reader mapped; 0 if none. */
unsigned long long mailsuspend_light_change_stamp(void);

void mailsuspend_light_deinit(void);

#endif
