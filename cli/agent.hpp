// What the CLI's long-running agents (`sync`, `notify`) share: their config
// check, their stop signal and sleeps, and the small state files they keep
// next to the store (the fleet position, the notify position).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"

namespace mailsuspend::cli {

// The config at path when has_group(config); else nullopt with exit code 2
// in code and "<path> <missing>" (or the config's error) on stderr.
std::optional<Config> load_agent_config(const std::string& path, bool (*has_group)(const Config&),
                                        const std::string& missing, int& code);

// SIGTERM and SIGINT ask the agent to stop (stop_requested() turns true);
// SIGPIPE is ignored (a peer that went away is an error, not the end).
void install_stop_signals();
bool stop_requested();
// Sleeps ms milliseconds, or less when a stop is asked for.
void sleep_unless_stopped(int64_t ms);

// Writes lines to stderr, each as "mailsuspend <agent>: <line>", in one
// write(2): through std::cerr (unbuffered) each line would be a system call.
void agent_log(const char* agent, const std::vector<std::string>& lines);

// Replaces dir/name by text through a temporary file, fdatasync, rename and
// an fsync of dir: after a crash the file holds the old text or the new one.
// false with the error in error_r.
bool replace_file_durably(const std::string& dir, const std::string& name, const std::string& text,
                          std::string& error_r);

}  // namespace mailsuspend::cli
