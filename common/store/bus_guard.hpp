// SIGBUS guard for shared file mappings (the store, the metrics files).
// A file truncated in place under a mapping (an admin's `truncate`, a full
// disk restore gone wrong, a member of the group that may write it) makes
// the next touch of a page past the new end raise SIGBUS, which would kill
// the Dovecot or Exim process.  Accesses to such a mapping run under a guard
// that turns that SIGBUS into "failed": only raw loads, stores and atomics
// run inside it, never allocation or a library call.  A SIGBUS outside a
// guard goes to whatever handled it before.
#pragma once

#include <setjmp.h>

namespace mailsuspend {

// Points the SIGBUS handler at guard (nullptr: no guard).  Out of line: the
// thread-local pointer stays private to bus_guard.cpp, where it can be
// initial-exec TLS without a C++ TLS wrapper (see there).
void arm_bus_guard(sigjmp_buf* guard) noexcept;

// Installs the handler, once per process (a system call the first time).
void install_bus_guard();

// Puts the handler back in front when a host replaced it since (one system
// call to look; a second to re-install, keeping the host's as the next).
void reclaim_bus_guard() noexcept;

// Runs access (raw loads/stores of a mapping only); false when it faulted.
// No system call: sigsetjmp does not save the signal mask.
template <typename F>
bool under_bus_guard(F&& access) noexcept {
    sigjmp_buf guard;
    if (sigsetjmp(guard, 0) != 0) return false;
    arm_bus_guard(&guard);
    access();
    arm_bus_guard(nullptr);
    return true;
}

}  // namespace mailsuspend
