// mailsuspend doctor: checks a live installation (the config, the store, the
// identities Dovecot's and Exim's processes really run with, the wiring of
// both servers, the retry rules, the timers) and proves it with a probe
// address suspended for the moment of the check.  Every problem is printed
// with its fix; exit 0 only when every check holds.
#pragma once

#include <string>

#include "commands.hpp"

namespace mailsuspend::cli {

int cmd_doctor(const Options& o);

}  // namespace mailsuspend::cli
