/* Another local_scan module, as an admin may run instead of mailsuspend's
   (sa-exim, for instance) while keeping mailsuspend's ACLs and routers:
   test_module_load.py's OtherLocalScanTest points local_scan_path here and
   checks, from the main log, that this local_scan only ever gets messages. */
#include <local_scan.h>

int local_scan_version_major(void) { return LOCAL_SCAN_ABI_VERSION_MAJOR; }
int local_scan_version_minor(void) { return LOCAL_SCAN_ABI_VERSION_MINOR; }

int local_scan(int fd, uschar **return_text)
{
	(void)return_text;
	log_write(0, LOG_MAIN, "other local_scan: data fd %s", fd >= 0 ? "open" : "missing");
	return LOCAL_SCAN_ACCEPT;
}
