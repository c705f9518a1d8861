/* lib95_sieve_mailsuspend_plugin.so: ManageSieve sessions of a suspended
   "sieve" service never start.

   Loaded as a mail plugin of the ManageSieve server
   (protocol sieve { mail_plugins = $mail_plugins sieve_mailsuspend }).
   Ordinary logins are refused by the passdb; this plugin refuses the
   master-user logins that skip it (see mailsuspend-session.h).  ManageSieve
   offers plugins no hook into its client, so a live session is not
   re-checked: ManageSieve sessions are short (a script upload). */
#include "lib.h"
#include "module-dir.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"
#include "mailsuspend-light.h"
#include "mailsuspend-session.h"

const char *sieve_mailsuspend_plugin_version = DOVECOT_ABI_VERSION;
void sieve_mailsuspend_plugin_init(struct module *module);
void sieve_mailsuspend_plugin_deinit(void);

void sieve_mailsuspend_plugin_init(struct module *module)
{
	mailsuspend_lazy_init(module);
	mailsuspend_session_start_hooks_add(module);
}

void sieve_mailsuspend_plugin_deinit(void)
{
	mailsuspend_session_start_hooks_remove();
	mailsuspend_lazy_deinit();
	mailsuspend_light_deinit();
}
