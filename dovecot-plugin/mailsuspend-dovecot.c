/* Shared helpers of the mailsuspend Dovecot modules (see the header). */
#include "lib.h"
#include "mailsuspend-dovecot.h"

static struct mailsuspend_handle *process_handle = NULL;
static unsigned int process_refcount = 0;

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

struct mailsuspend_handle *mailsuspend_dovecot_get(const char *config_path)
{
	const char *error = NULL;

	/* error is not logged here: the first lookup that meets the problem
	   logs it (once per process) through mailsuspend_dovecot_log. */
	process_refcount++;
	if (process_handle != NULL)
		return process_handle;
	if (config_path != NULL && *config_path == '\0')
		config_path = NULL;
	process_handle = mailsuspend_open(config_path, mailsuspend_dovecot_log,
					  NULL, &error);
	if (process_handle == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "mailsuspend: out of memory");
	/* A missing store or a bad config is not fatal: the handle applies
	   store.fail_policy until the store can be opened. */
	return process_handle;
}

void mailsuspend_dovecot_put(void)
{
	i_assert(process_refcount > 0);
	if (--process_refcount == 0)
		mailsuspend_close(&process_handle);
}

bool mailsuspend_dovecot_is_delivery(const char *protocol)
{
	return protocol != NULL &&
		(strcmp(protocol, "lmtp") == 0 || strcmp(protocol, "lda") == 0);
}
