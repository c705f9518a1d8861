#include "text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace mailsuspend {
namespace {

constexpr struct {
    char unit;
    int64_t seconds;
} kUnits[] = {{'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

int64_t unit_seconds(char c) {
    for (const auto& u : kUnits)
        if (u.unit == c) return u.seconds;
    return 0;
}

// Length of the valid UTF-8 sequence at s[i], 0 if invalid.
std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
    // RFC 3629: shortest form only, no UTF-16 surrogates, nothing past U+10FFFF.
    const auto c1 = n > 1 ? static_cast<unsigned char>(s[i + 1]) : 0;
    if ((n == 2 && c < 0xC2) || (n == 3 && c == 0xE0 && c1 < 0xA0) ||
        (n == 3 && c == 0xED && c1 >= 0xA0) || (n == 4 && c == 0xF0 && c1 < 0x90) ||
        (n == 4 && (c > 0xF4 || (c == 0xF4 && c1 >= 0x90))))
        return 0;
    return n;
}

// The code point of the valid UTF-8 sequence of n octets at s[i].
char32_t code_point(std::string_view s, std::size_t i, std::size_t n) {
    const auto c = static_cast<unsigned char>(s[i]);
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    return cp;
}

// What must not be shown as it is: C0 and C1 controls (C1 = U+0080..U+009F,
// e.g. NEL), the line and paragraph separators U+2028/U+2029, and the
// bidirectional formatting characters (U+061C, U+200E/F, U+202A..U+202E,
// U+2066..U+2069) that make a terminal or a mail client show text in
// another order than it is (U+202E, right-to-left override).
bool is_control_point(char32_t cp) {
    return cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

bool is_control(std::string_view s, std::size_t i, std::size_t n) {
    return is_control_point(code_point(s, i, n));
}

}  // namespace

std::optional<int64_t> parse_duration(std::string_view text, std::string& error_r) {
    if (text.empty()) {
        error_r = "empty duration";
        return std::nullopt;
    }
    int64_t total = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
            error_r = "bad duration '" + escape_for_display(text, 80) + "' (use e.g. 90s, 30m, 24h, 90d, 4d8h)";
            return std::nullopt;
        }
        int64_t n = 0;
        for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
            n = n * 10 + (text[i] - '0');
            if (n > 50LL * 365 * 86400) {
                error_r = "duration '" + escape_for_display(text, 80) + "' is too long (at most 50 years)";
                return std::nullopt;
            }
        }
        int64_t unit = 1;
        if (i < text.size()) {
            unit = unit_seconds(text[i]);
            if (unit == 0) {
                error_r = "bad duration unit '" + escape_for_display(text.substr(i, 1), 8) + "' in '" +
                          escape_for_display(text, 80) + "' (units: w d h m s)";
                return std::nullopt;
            }
            ++i;
        } else if (total != 0) {
            error_r = "bad duration '" + escape_for_display(text, 80) + "': number without unit";
            return std::nullopt;
        }
        total += n * unit;
        if (total > 50LL * 365 * 86400) {
            error_r = "duration '" + escape_for_display(text, 80) + "' is too long (at most 50 years)";
            return std::nullopt;
        }
    }
    return total;
}

std::string format_duration(int64_t seconds) {
    if (seconds <= 0) return "0s";
    std::string out;
    for (const auto& u : kUnits) {
        if (u.unit == 'w') continue;  // days read better than weeks in replies
        if (seconds >= u.seconds) {
            out += std::to_string(seconds / u.seconds) + u.unit;
            seconds %= u.seconds;
        }
    }
    return out;
}

bool check_free_text(std::string_view text, std::size_t max, std::string& error_r) {
    if (text.size() > max)
        return error_r = "too long: " + std::to_string(text.size()) + " octets, at most " + std::to_string(max),
               false;
    // Printable ASCII (nearly every configured text) passes every test
    // below: skipped eight octets at a time.  Every fresh Exim process reads
    // the config's messages.
    for (std::size_t i = printable_ascii_prefix(text, text.size()); i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\r' || c == '\n')
            return error_r = "contains a line break (CR/LF) at octet " + std::to_string(i), false;
        const std::size_t n = utf8_length(text, i);
        if (n == 0) return error_r = "is not valid UTF-8 at octet " + std::to_string(i), false;
        if (is_control(text, i, n))
            return error_r = "contains a control character (or a line separator or bidirectional formatting "
                             "character) at octet " + std::to_string(i),
                   false;
        i += n;
    }
    return true;
}

std::size_t printable_ascii_prefix(std::string_view text, std::size_t max) {
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
    const std::size_t limit = std::min(text.size(), max);
    // Some octet of w below 0x20 (the subtraction borrows only from one), or
    // at 0x7F and above: the octet loop below finds which.
    const auto unprintable = [&](std::size_t at) {
        uint64_t w;
        std::memcpy(&w, text.data() + at, 8);
        const uint64_t control = (w - 0x20 * kOnes) & ~w & kHigh;
        const uint64_t high = (((w & ~kHigh) + kOnes) | w) & kHigh;
        return (control | high) != 0;
    };
    std::size_t n = 0;
    for (; n + 8 <= limit; n += 8)
        if (unprintable(n)) break;
    // The last few octets as the word that ends with them (it overlaps the
    // octets already seen, which are printable).
    if (n < limit && limit >= 8 && n + 8 > limit && !unprintable(limit - 8)) return limit;
    while (n < limit && text[n] >= 0x20 && text[n] < 0x7F) ++n;
    return n;
}

std::string sanitise_line(std::string_view text, std::size_t max) {
    // The common case, printable ASCII, is copied as it is: a denied check
    // formats its reply with this, and reasons were checked when written.
    const std::size_t plain = printable_ascii_prefix(text, max);
    if (plain == text.size() || plain == max) return std::string(text.substr(0, plain));
    std::string out(text.substr(0, plain));
    out.reserve(std::min(text.size(), max));
    for (std::size_t i = plain; i < text.size() && out.size() < max;) {
        const std::size_t n = utf8_length(text, i);
        if (n == 0 || is_control(text, i, n)) {
            out += '?';
            i += n == 0 ? 1 : n;
        } else {
            if (out.size() + n > max) break;
            out.append(text.substr(i, n));
            i += n;
        }
    }
    return out;
}

std::string escape_for_display(std::string_view text, std::size_t max) {
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < text.size(); ) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
        const std::size_t n = utf8_length(text, i);
        if (n > 0 && !is_control(text, i, n)) {
            out.append(text.substr(i, n));
            i += n;
            continue;
        }
        if (n > 1) {  // a control character beyond ASCII: its code point
            char buf[16];
            std::snprintf(buf, sizeof buf, "\\u{%X}", static_cast<unsigned>(code_point(text, i, n)));
            out += buf;
            i += n;
            continue;
        }
        const auto c = static_cast<unsigned char>(text[i++]);  // an ASCII control or a stray byte
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
    }
    return out;
}

std::string format_time(int64_t epoch) {
    if (epoch == 0) return "never";
    std::time_t t = static_cast<std::time_t>(epoch);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

namespace {
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
}  // namespace

std::string ascii_lowered(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = lower(c);
    return out;
}

std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

}  // namespace mailsuspend
