// What every operation of the core returns (the CLI's exit code and one line
// for the user), and the check every target of an operation passes first.
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
