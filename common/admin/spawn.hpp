// Running an external program for the CLI's side of the core (the queue
// commands of unsuspend, the AUP notice's MTA): one way, no shell.  And the
// one way a mail server's process has work done that may wait: a detached
// process it does not wait on past a deadline.
#pragma once

#include <cstdint>
#include <functional>
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
// /dev/null (or into *output_r, at most 64 KiB), and waits for it.  True
// when it exits 0, else false with what went wrong in error_r (with the
// start of what it wrote on stderr).  It waits: never call it from a
// Dovecot or Exim process.
bool run_program(std::vector<std::string> args, std::string& error_r, std::string_view input = {},
                 std::string* output_r = nullptr);

enum class Detached { finished, running, not_started };

// Runs work in a detached process (a grandchild: the child between exits at
// once, so the caller reaps it after a fork and waits on nothing else) and
// waits wait_ms at most for it to finish.  finished: done within wait_ms;
// running: it goes on alone and ends by itself; not_started: no process
// (fork failed), work did not run.  For a Dovecot or Exim process whose
// work may wait on a lock or a disk flush.  The detached process leaves by
// _exit(): no atexit handler, no stdio buffer of the host runs twice.
Detached run_detached(int64_t wait_ms, const std::function<void()>& work) noexcept;

}  // namespace mailsuspend
