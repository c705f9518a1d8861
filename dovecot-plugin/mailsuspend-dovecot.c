/* Shared helpers of the mailsuspend Dovecot modules (see the header). */
#include "lib.h"
#include "mailsuspend-dovecot.h"

void mailsuspend_dovecot_log(void *ctx, enum mailsuspend_log_level level,
			     const char *msg)
{
	struct event *event = ctx;

	/* The core's lines already start with "mailsuspend: ". */
	switch (level) {
	case MAILSUSPEND_LOG_INFO:
		e_info(event, "%s", msg);
		break;
	case MAILSUSPEND_LOG_WARNING:
		e_warning(event, "%s", msg);
		break;
	case MAILSUSPEND_LOG_ERROR:
	default:
		e_error(event, "%s", msg);
		break;
	}
}
