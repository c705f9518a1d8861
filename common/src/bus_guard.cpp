#include "bus_guard.hpp"

#include <signal.h>

namespace mailsuspend {

__thread sigjmp_buf* t_bus_guard __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

struct sigaction g_previous_bus {};

extern "C" void mailsuspend_on_sigbus(int sig, siginfo_t* info, void* context) {
    if (sigjmp_buf* guard = t_bus_guard) {
        t_bus_guard = nullptr;
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

}  // namespace

// Once per process.  A function-local static rather than std::call_once,
// whose thread-local state would make the host modules need __tls_get_addr.
void install_bus_guard() {
    static const bool installed = install_bus_handler();
    (void)installed;
}

}  // namespace mailsuspend
