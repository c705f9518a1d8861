/* libmailsuspend_core.so: the core's C API as a module of its own, loaded
   by the imap and pop3 plugins only when a session first needs it (see
   mailsuspend-lazy.h).  Only these functions are exported (core-module.map). */
#include "mailsuspend/mailsuspend.h"

/* Makes the linker pull the C API out of the static core. */
void *const mailsuspend_core_module_api[] = {
	(void *)mailsuspend_open,
	(void *)mailsuspend_close,
	(void *)mailsuspend_check_login,
	(void *)mailsuspend_check_service,
	(void *)mailsuspend_count_event,
	(void *)mailsuspend_change_stamp,
	(void *)mailsuspend_notify_path,
};
