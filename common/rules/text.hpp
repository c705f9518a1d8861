// Small text rules shared by every input path: durations and free text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailsuspend {

constexpr std::size_t kMaxReason = 200;

// "90s", "30m", "24h", "90d", "4d8h", "1w" -> seconds; a bare number is seconds.
std::optional<int64_t> parse_duration(std::string_view text, std::string& error_r);
std::string format_duration(int64_t seconds);  // 376 * 3600 -> "15d16h"

// Free text (a reason, an actor): printable UTF-8, no CR/LF or other
// control characters, at most max octets.  false with what is wrong in error_r.
bool check_free_text(std::string_view text, std::size_t max, std::string& error_r);

// Replaces control characters with '?' and cuts at max octets: for text
// that reaches a protocol line or a log whatever its origin.
// How many octets at the start of text (at most max) are printable ASCII
// (0x20-0x7E), the text that replies and logs take as it is.  Eight octets
// at a time: a denied check formats its reply with this.
std::size_t printable_ascii_prefix(std::string_view text, std::size_t max);

std::string sanitise_line(std::string_view text, std::size_t max);

// text for an error message or a terminal: every control character (C0, C1,
// DEL), line separator, bidirectional formatting character and byte that is
// not UTF-8 written as an escape (ESC -> \x1b, U+202E -> \u{202E}); cut
// after about max octets ("..." added).
std::string escape_for_display(std::string_view text, std::size_t max = 200);

// ASCII letters lower-cased, nothing else touched (header names, domains).
std::string ascii_lowered(std::string_view s);
// Without leading blanks, nor trailing blanks and CR (a header field's value).
std::string_view trim_blanks(std::string_view s);

std::string format_time(int64_t epoch);  // "2026-11-23 11:08:19 UTC"; "never" for 0

}  // namespace mailsuspend
