// Running an external program for the CLI's side of the core (the queue
// commands of unsuspend, the AUP notice's MTA): one way, no shell.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailsuspend {

// A command template split on spaces (no shell); each (placeholder, value)
// is replaced in every word, in the order given, and stays a part of that
// one argument whatever the value holds.
std::vector<std::string> command_words(const std::string& templ,
                                       const std::vector<std::pair<std::string_view, std::string>>& fills);

// Runs args[0] (an absolute path) with args, input on stdin and stdout to
// /dev/null, and waits for it.  True when it exits 0, else false with what
// went wrong in error_r (with the start of what it wrote on stderr).  It
// waits: never call it from a Dovecot or Exim process.
bool run_program(std::vector<std::string> args, std::string& error_r, std::string_view input = {});

}  // namespace mailsuspend
