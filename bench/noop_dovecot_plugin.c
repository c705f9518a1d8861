/* lib01_mailsuspend_noop_plugin.so: a Dovecot mail plugin that does
   nothing.  bench/dovecot_load.py --baseline-plugin loads it into the
   baseline Dovecot, so the comparison shows what mailsuspend's plugins cost
   beyond what loading any mail plugin costs Dovecot itself. */
#include "lib.h"
#include "module-dir.h"

const char *mailsuspend_noop_plugin_version = DOVECOT_ABI_VERSION;
void mailsuspend_noop_plugin_init(struct module *module);
void mailsuspend_noop_plugin_deinit(void);

void mailsuspend_noop_plugin_init(struct module *module ATTR_UNUSED)
{
}

void mailsuspend_noop_plugin_deinit(void)
{
}
