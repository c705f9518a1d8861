/* Shared helpers of the mailsuspend Dovecot modules (see the header). */
#include "lib.h"
#include "mailsuspend-dovecot.h"

void mailsuspend_dovecot_log(void *ctx ATTR_UNUSED,
			     enum mailsuspend_log_level level, const char *msg)
{
	/* The core's lines already start with "mailsuspend: ". */
	switch (level) {
	case MAILSUSPEND_LOG_INFO:
		i_info("%s", msg);
		break;
	case MAILSUSPEND_LOG_WARNING:
		i_warning("%s", msg);
		break;
	case MAILSUSPEND_LOG_ERROR:
	default:
		i_error("%s", msg);
		break;
	}
}
