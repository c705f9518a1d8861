/* Shared helpers of the mailsuspend Dovecot modules.  No suspension logic
   lives here; every decision comes from the core's C API. */
#ifndef MAILSUSPEND_DOVECOT_H
#define MAILSUSPEND_DOVECOT_H

#include "mailsuspend/mailsuspend.h"

/* Setting (plugin {} in mail processes, passdb args in auth) naming the
   mailsuspend config file. */
#define MAILSUSPEND_SETTING_CONFIG "mailsuspend_config"

/* Logger for mailsuspend_open(): one Dovecot log line per core message,
   logged through the event passed as the log context (the opener's own
   event, created with event_create(); never NULL). */
void mailsuspend_dovecot_log(void *ctx, enum mailsuspend_log_level level,
			     const char *msg);

#endif
