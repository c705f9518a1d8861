// `mailsuspend notify`: the alerts agent (issue 16, item 4), a foreground
// process (conf/systemd/mailsuspend-notify.service), never part of a Dovecot
// or Exim process.
#pragma once

#include "commands.hpp"

namespace mailsuspend::cli {

int cmd_notify(const Options& o);

}  // namespace mailsuspend::cli
