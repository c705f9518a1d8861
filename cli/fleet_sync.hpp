// `mailsuspend sync` (the fleet agent) and `mailsuspend fleet-status`.
#pragma once

#include "commands.hpp"

namespace mailsuspend::cli {

int cmd_sync(const Options& o);
int cmd_fleet_status(const Options& o);

}  // namespace mailsuspend::cli
