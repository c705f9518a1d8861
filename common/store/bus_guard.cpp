#include "bus_guard.hpp"

#include <signal.h>

namespace mailsuspend {

namespace {

// initial-exec: the modules Dovecot and Exim dlopen must not need
// __tls_get_addr (Exim's loader check refuses symbols it does not export);
// eight bytes of static TLS are always to be had.  Internal linkage and
// constant initialisation: no C++ thread_local wrapper either.
[[gnu::tls_model("initial-exec")]] thread_local sigjmp_buf* t_bus_guard = nullptr;

struct sigaction g_previous_bus {};

extern "C" void mailsuspend_on_sigbus(int sig, siginfo_t* info, void* context) {
    if (sigjmp_buf* guard = t_bus_guard) {
        t_bus_guard = nullptr;
        // Leave SIGBUS unblocked: the guard's sigsetjmp saves no mask (a
        // system call per access), and SA_NODEFER is not honoured by every
        // wrapper of this handler (TSan's blocks all signals while it runs),
        // so the next fault would find SIGBUS blocked and end the process.
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        sigprocmask(SIG_UNBLOCK, &bus, nullptr);
        siglongjmp(*guard, 1);
    }
    if ((g_previous_bus.sa_flags & SA_SIGINFO) && g_previous_bus.sa_sigaction) {
        g_previous_bus.sa_sigaction(sig, info, context);
    } else if (g_previous_bus.sa_handler != SIG_DFL && g_previous_bus.sa_handler != SIG_IGN) {
        g_previous_bus.sa_handler(sig);
    } else {
        // Default action: restore it; the faulting access repeats and ends the process.
        signal(SIGBUS, SIG_DFL);
    }
}

bool install_bus_handler() {
    struct sigaction action {};
    action.sa_sigaction = mailsuspend_on_sigbus;
    // NODEFER: the guard leaves with siglongjmp, which must not leave SIGBUS blocked.
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, &g_previous_bus) == 0;
}

bool handler_in_place() {
    struct sigaction current {};
    return sigaction(SIGBUS, nullptr, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
           current.sa_sigaction == mailsuspend_on_sigbus;
}

}  // namespace

void arm_bus_guard(sigjmp_buf* guard) noexcept { t_bus_guard = guard; }

// Once per process.  A function-local static rather than std::call_once,
// whose thread-local state would make the host modules need __tls_get_addr.
void install_bus_guard() {
    static const bool installed = install_bus_handler();
    (void)installed;
}

void reclaim_bus_guard() noexcept {
    if (!handler_in_place()) install_bus_handler();
}

}  // namespace mailsuspend
