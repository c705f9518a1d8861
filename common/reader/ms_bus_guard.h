/* SIGBUS guard for shared file mappings (the store, the metrics files).
   A file truncated in place under a mapping (an admin's `truncate`, a full
   disk restore gone wrong, a member of the group that may write it) makes
   the next touch of a page past the new end raise SIGBUS, which would kill
   the Dovecot or Exim process.  Accesses to such a mapping run under a
   guard that turns that SIGBUS into "failed": only raw loads, stores and
   atomics run inside it, never allocation or a library call.  A SIGBUS
   outside a guard goes to whatever handled it before.

   In C:
       sigjmp_buf guard;
       if (sigsetjmp(guard, 0) != 0) return FAILED;  (no system call: no mask)
       ms_bus_guard_arm(&guard);
       ... loads from the mapping ...
       ms_bus_guard_arm(NULL);
   C++ wraps this as under_bus_guard() (common/store/bus_guard.hpp). */
#ifndef MS_BUS_GUARD_H
#define MS_BUS_GUARD_H

#include <setjmp.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The guard the handler jumps to, NULL outside one: per thread and per
   module (hidden: each module that links the reader has its own, as it
   has its own handler in the chain).  initial-exec: the modules Dovecot
   and Exim dlopen must not need __tls_get_addr (Exim's loader check
   refuses symbols it does not export); eight bytes of static TLS are
   always to be had. */
extern __thread sigjmp_buf *ms_bus_guard_active
	__attribute__((tls_model("initial-exec"), visibility("hidden")));

/* Points the SIGBUS handler at guard (NULL: no guard).  Inline: every
   lookup arms and disarms once. */
static inline void ms_bus_guard_arm(sigjmp_buf *guard)
{
	ms_bus_guard_active = guard;
}

/* Installs the handler, once per process (a system call the first time). */
void ms_bus_guard_install(void);

/* Puts the handler back in front when a host replaced it since (one system
   call to look; a second to re-install, keeping the host's as the next). */
void ms_bus_guard_reclaim(void);

#ifdef __cplusplus
}
#endif

#endif
