// The SIGBUS guard shared by every file a host process maps (the store, the
// rate counters).  A file truncated in place under a mapping (an admin's
// `truncate`, a restore gone wrong) makes the next touch of a page past the
// new end raise SIGBUS, which would kill the Dovecot or Exim process.
// Accesses of a mapping run under a guard that turns that SIGBUS into a
// "false" the caller reports as "unavailable": only raw loads, stores and
// atomics run inside it, never allocation or a library call.  A SIGBUS
// outside a guard goes to whatever handled it before.
#pragma once

#include <setjmp.h>

namespace mailsuspend {

// initial-exec: the modules Dovecot and Exim dlopen must not need
// __tls_get_addr (Exim's loader check refuses symbols it does not export);
// eight bytes of static TLS are always to be had.
// __thread, not thread_local: no TLS wrapper function (_ZTH...) to resolve.
extern __thread sigjmp_buf* t_bus_guard __attribute__((tls_model("initial-exec")));

// Installs the handler once per process (idempotent, cheap after the first call).
void install_bus_guard();

// Runs access (raw loads/stores of a mapping only); false when it faulted.
template <typename F>
bool under_bus_guard(F&& access) noexcept {
    sigjmp_buf guard;
    if (sigsetjmp(guard, 0) != 0) return false;
    t_bus_guard = &guard;
    access();
    t_bus_guard = nullptr;
    return true;
}

}  // namespace mailsuspend
