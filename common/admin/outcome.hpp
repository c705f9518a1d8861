// What an admin operation (Session, and the policy operations the CLI runs
// through it) returns to the CLI: the exit class and the one line the user
// reads.  It is not the core's error channel: a function that can fail
// returns whether it worked and puts the error text in a `std::string&
// error_r` out-parameter (docs/design.md, "Conventions"); an Outcome is made
// only where an admin operation answers the CLI.  Also the check every
// target of an operation passes first.
#pragma once

#include <string>
#include <string_view>

namespace mailsuspend {

struct Config;

enum class Exit : int { ok = 0, failure = 1, bad_input = 2, refused = 3 };

struct Outcome {
    Exit code = Exit::ok;
    std::string message;  // one line for the user
    bool ok() const { return code == Exit::ok; }
};

// Normalises a target; Exit::bad_input with the reason when invalid.
Outcome normalise_target(const Config& cfg, std::string_view text, std::string& key);

}  // namespace mailsuspend
