// The SIGBUS guard for shared file mappings, for C++: the C reader's
// (common/reader/ms_bus_guard.h says what it guards against and why).
#pragma once

#include <setjmp.h>

#include "ms_bus_guard.h"

namespace mailsuspend {

// Installs the handler, once per process (a system call the first time).
inline void install_bus_guard() { ms_bus_guard_install(); }

// Puts the handler back in front when a host replaced it since.
inline void reclaim_bus_guard() noexcept { ms_bus_guard_reclaim(); }

// Runs access (raw loads/stores of a mapping only); false when it faulted.
// No system call: sigsetjmp does not save the signal mask.
template <typename F>
bool under_bus_guard(F&& access) noexcept {
    sigjmp_buf guard;
    if (sigsetjmp(guard, 0) != 0) return false;
    ms_bus_guard_arm(&guard);
    access();
    ms_bus_guard_arm(nullptr);
    return true;
}

// A shared table file's access (the counters, the login pairs, the count
// log): access runs under the guard once intact() (its header still says
// what it said when mapped) holds.  false, and broken from then on, when the
// mapping faulted or the header changed (a file truncated or overwritten in
// place): the owner counts nothing through it and opens the file afresh.
template <typename Intact, typename F>
bool guarded_table_access(bool& broken, Intact&& intact, F&& access) noexcept {
    if (broken) return false;
    bool whole = false;
    if (!under_bus_guard([&] {
            whole = intact();
            if (whole) access();
        }) ||
        !whole)
        broken = true;
    return !broken;
}

}  // namespace mailsuspend
