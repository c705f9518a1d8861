/* The SIGBUS guard (see the header). */
#include "ms_bus_guard.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

__thread sigjmp_buf *ms_bus_guard_active;

static struct sigaction previous_bus;

static void ms_on_sigbus(int sig, siginfo_t *info, void *context)
{
	sigjmp_buf *guard = ms_bus_guard_active;
	sigset_t bus;

	if (guard != NULL) {
		ms_bus_guard_active = NULL;
		/* Leave SIGBUS unblocked: the guard's sigsetjmp saves no mask
		   (a system call per access), and SA_NODEFER is not honoured by
		   every wrapper of this handler (TSan's blocks all signals while
		   it runs), so the next fault would find SIGBUS blocked and end
		   the process. */
		sigemptyset(&bus);
		sigaddset(&bus, SIGBUS);
		sigprocmask(SIG_UNBLOCK, &bus, NULL);
		siglongjmp(*guard, 1);
	}
	if ((previous_bus.sa_flags & SA_SIGINFO) && previous_bus.sa_sigaction != NULL) {
		previous_bus.sa_sigaction(sig, info, context);
	} else if (previous_bus.sa_handler != SIG_DFL && previous_bus.sa_handler != SIG_IGN) {
		previous_bus.sa_handler(sig);
	} else {
		/* Default action: restore it; the faulting access repeats and
		   ends the process. */
		signal(SIGBUS, SIG_DFL);
	}
}

static bool install_handler(void);

static void install_once(void)
{
	(void)install_handler();
}

static bool install_handler(void)
{
	struct sigaction action = { 0 };

	action.sa_sigaction = ms_on_sigbus;
	/* NODEFER: the guard leaves with siglongjmp, which must not leave
	   SIGBUS blocked. */
	action.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&action.sa_mask);
	return sigaction(SIGBUS, &action, &previous_bus) == 0;
}

static bool handler_in_place(void)
{
	struct sigaction current;

	return sigaction(SIGBUS, NULL, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
		current.sa_sigaction == ms_on_sigbus;
}

void ms_bus_guard_install(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT; /* in libc since glibc 2.34 */

	(void)pthread_once(&once, install_once);
}

void ms_bus_guard_reclaim(void)
{
	if (!handler_in_place())
		(void)install_handler();
}
