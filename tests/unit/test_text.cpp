// Durations and free text.
#include <gtest/gtest.h>

#include <string>

#include "text.hpp"

using namespace mailsuspend;

namespace {

// What check_free_text says of text: "" when it passes, else why not (never empty).
std::string free_text_error(std::string_view text, std::size_t max) {
    std::string error;
    const bool ok = check_free_text(text, max, error);
    EXPECT_EQ(ok, error.empty()) << error;
    return ok ? "" : error;
}

int64_t dur(std::string_view text) {
    std::string error;
    auto d = parse_duration(text, error);
    EXPECT_TRUE(d.has_value()) << "'" << text << "': " << error;
    return d.value_or(-1);
}

// Refused, with fragment in the error.
void expect_bad_duration(std::string_view text, const std::string& fragment) {
    std::string error;
    auto d = parse_duration(text, error);
    EXPECT_FALSE(d.has_value()) << "'" << text << "' accepted as " << d.value_or(0);
    EXPECT_NE(error.find(fragment), std::string::npos) << "'" << text << "': " << error;
}

}  // namespace

TEST(Duration, Units) {
    EXPECT_EQ(dur("90s"), 90);
    EXPECT_EQ(dur("30m"), 30 * 60);
    EXPECT_EQ(dur("24h"), 24 * 3600);
    EXPECT_EQ(dur("90d"), 90 * 86400);
    EXPECT_EQ(dur("1w"), 7 * 86400);
}

TEST(Duration, Combined) {
    EXPECT_EQ(dur("4d8h"), 4 * 86400 + 8 * 3600);
    EXPECT_EQ(dur("1h30m"), 5400);
    EXPECT_EQ(dur("1w1d1h1m1s"), 8 * 86400 + 3661);
}

TEST(Duration, BareNumberIsSeconds) {
    EXPECT_EQ(dur("45"), 45);
    EXPECT_EQ(dur("0"), 0);
    EXPECT_EQ(dur("3600"), 3600);
}

TEST(Duration, Errors) {
    expect_bad_duration("", "empty");
    expect_bad_duration("4x", "unit 'x'");
    expect_bad_duration("h", "bad duration");
    expect_bad_duration("-5m", "bad duration");
    expect_bad_duration(" 5m", "bad duration");
    expect_bad_duration("5 m", "unit ' '");
    expect_bad_duration("4d8", "without unit");
    expect_bad_duration("1.5h", "unit '.'");
}

TEST(Duration, TooLong) {
    expect_bad_duration("20000d", "too long");
    expect_bad_duration("99999999999999999999999", "too long");
    expect_bad_duration("18000d18000d", "too long");
    EXPECT_EQ(dur("18250d"), 18250LL * 86400);  // 50 years is the limit itself
}

TEST(Duration, Format) {
    EXPECT_EQ(format_duration(376 * 3600), "15d16h");
    EXPECT_EQ(format_duration(90), "1m30s");
    EXPECT_EQ(format_duration(3661), "1h1m1s");
    EXPECT_EQ(format_duration(7 * 86400), "7d");
    EXPECT_EQ(format_duration(0), "0s");
    EXPECT_EQ(format_duration(-5), "0s");
}

TEST(Duration, FormatParsesBack) {
    for (int64_t s : {1LL, 59LL, 61LL, 3599LL, 86399LL, 86401LL, 376LL * 3600, 90LL * 86400 + 7}) {
        std::string error;
        EXPECT_EQ(parse_duration(format_duration(s), error).value_or(-1), s) << format_duration(s);
    }
}

TEST(FreeText, AcceptsPrintableUtf8) {
    EXPECT_EQ(free_text_error("", 200), "");
    EXPECT_EQ(free_text_error("Spam complaint #42 (ticket 17)", 200), "");
    EXPECT_EQ(free_text_error("Zahlung \xC3\xBC" "berf\xC3\xA4llig", 200), "");  // überfällig
    EXPECT_EQ(free_text_error("\xE6\x97\xA5\xE6\x9C\xAC", 200), "");              // 日本
    EXPECT_EQ(free_text_error("\xF0\x9F\x93\xA7 mail", 200), "");                  // 📧
}

TEST(FreeText, RefusesLineBreaks) {
    EXPECT_NE(free_text_error("a\r\nb", 200).find("CR/LF"), std::string::npos);
    EXPECT_NE(free_text_error("a\nb", 200).find("CR/LF"), std::string::npos);
    EXPECT_NE(free_text_error("a\rb", 200).find("at octet 1"), std::string::npos);
}

TEST(FreeText, RefusesControlCharacters) {
    EXPECT_NE(free_text_error("a\tb", 200).find("control character"), std::string::npos);
    EXPECT_NE(free_text_error("a\x1b[31m", 200).find("control character"), std::string::npos);
    EXPECT_NE(free_text_error("del\x7f", 200).find("control character"), std::string::npos);
    EXPECT_NE(free_text_error(std::string("nul\0x", 5), 200).find("control character"),
              std::string::npos);
}

// Printable ASCII is skipped a word at a time: a bad octet anywhere in a
// long printable text, at each place in and around the words, is still
// found, and at the right octet.
TEST(FreeText, FindsABadOctetAnywhereInALongPrintableText) {
    for (std::size_t at = 0; at < 40; ++at)
        for (const char bad : {'\n', '\t', '\x7f', '\xff'}) {
            std::string text(40, 'a');
            text[at] = bad;
            EXPECT_NE(free_text_error(text, 200).find("at octet " + std::to_string(at)), std::string::npos)
                << "octet " << at << ": " << free_text_error(text, 200);
        }
    EXPECT_EQ(free_text_error(std::string(40, 'a') + "\xC3\xA9", 200), "");
}

TEST(FreeText, RefusesC1ControlCharacters) {
    // U+0085 (NEL) and U+009B (CSI) are control characters too, in UTF-8 form.
    EXPECT_NE(free_text_error("a\xC2\x85" "b", 200), "");
    EXPECT_NE(free_text_error("a\xC2\x9B" "31m", 200), "");
}

// Issue 12, item 10: line separators and bidirectional formatting characters
// show text in another order or on another line than it is.
TEST(FreeText, RefusesLineSeparatorsAndBidiControls) {
    for (const char* bad : {"\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAA", "\xE2\x80\xAB", "\xE2\x80\xAC",
                            "\xE2\x80\xAD", "\xE2\x80\xAE", "\xE2\x81\xA6", "\xE2\x81\xA7", "\xE2\x81\xA8",
                            "\xE2\x81\xA9", "\xE2\x80\x8E", "\xE2\x80\x8F", "\xD8\x9C"}) {
        const std::string text = std::string("abc") + bad + "def";
        EXPECT_NE(free_text_error(text, 200).find("at octet 3"), std::string::npos) << text;
        EXPECT_EQ(sanitise_line(text, 200), "abc?def");
    }
    // Their neighbours are printable.
    EXPECT_EQ(free_text_error("a\xE2\x80\xA7" "b\xE2\x80\xAF" "c\xE2\x81\xA5" "d\xE2\x81\xAA", 200), "");
    EXPECT_EQ(free_text_error("M\xC3\xBCller \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D", 200), "");  // Hebrew is fine
}

TEST(EscapeForDisplay, EscapesEveryControlAndStrayByte) {
    EXPECT_EQ(escape_for_display("plain text"), "plain text");
    EXPECT_EQ(escape_for_display(std::string("a\x1b[31mb\0c", 9)), "a\\x1b[31mb\\x00c");
    EXPECT_EQ(escape_for_display("a\x7f\tb\r\n"), "a\\x7f\\x09b\\x0d\\x0a");
    EXPECT_EQ(escape_for_display("x\xE2\x80\xAEy"), "x\\u{202E}y");
    EXPECT_EQ(escape_for_display("x\xC2\x9By"), "x\\u{9B}y");
    EXPECT_EQ(escape_for_display("\xFF\xC3"), "\\xff\\xc3");
    EXPECT_EQ(escape_for_display("M\xC3\xBCller"), "M\xC3\xBCller");
    EXPECT_EQ(escape_for_display(std::string(50, 'a'), 10), std::string(10, 'a') + "...");
}

TEST(Duration, ErrorsEscapeTheInput) {
    std::string error;
    EXPECT_FALSE(parse_duration(std::string("1\x1b" "d\0", 4), error));
    EXPECT_EQ(error.find('\x1b'), std::string::npos) << error;
    EXPECT_NE(error.find("\\x1b"), std::string::npos) << error;
}

TEST(FreeText, RefusesInvalidUtf8) {
    EXPECT_NE(free_text_error("caf\xC3", 200).find("UTF-8"), std::string::npos);      // cut short
    EXPECT_NE(free_text_error("\xFF" "abc", 200).find("UTF-8"), std::string::npos);    // never valid
    EXPECT_NE(free_text_error("\xC3\x28", 200).find("UTF-8"), std::string::npos);      // bad continuation
    EXPECT_NE(free_text_error("\xBF" "abc", 200).find("UTF-8"), std::string::npos);    // lone continuation
}

TEST(FreeText, RefusesOverlongAndNonCharacterUtf8) {
    EXPECT_NE(free_text_error("\xC0\xAF", 200), "") << "overlong '/'";
    EXPECT_NE(free_text_error("\xE0\x80\xAF", 200), "") << "overlong '/'";
    EXPECT_NE(free_text_error("\xED\xA0\x80", 200), "") << "UTF-16 surrogate";
    EXPECT_NE(free_text_error("\xF4\x90\x80\x80", 200), "") << "past U+10FFFF";
}

TEST(FreeText, Length) {
    EXPECT_EQ(free_text_error(std::string(200, 'a'), 200), "");
    EXPECT_NE(free_text_error(std::string(201, 'a'), 200).find("too long"), std::string::npos);
    EXPECT_NE(free_text_error(std::string(201, 'a'), 200).find("201"), std::string::npos);
}

TEST(SanitiseLine, ReplacesControlsAndInvalidBytes) {
    EXPECT_EQ(sanitise_line("a\r\nb", 100), "a??b");
    EXPECT_EQ(sanitise_line("tab\there", 100), "tab?here");
    EXPECT_EQ(sanitise_line("bad\xFF", 100), "bad?");
    EXPECT_EQ(sanitise_line("\xC3\xBC" "ok", 100), "\xC3\xBC" "ok");
    EXPECT_EQ(sanitise_line("a\xC2\x85" "b", 100), "a?b");    // NEL, a C1 control
    EXPECT_EQ(sanitise_line("a\xC0\xAF" "b", 100), "a??b");  // overlong: two bad octets
}

TEST(SanitiseLine, CutsAtMaxWithoutSplittingCharacters) {
    EXPECT_EQ(sanitise_line("abcdef", 3), "abc");
    EXPECT_EQ(sanitise_line("\xC3\xBC\xC3\xBC", 3), "\xC3\xBC");
    EXPECT_EQ(sanitise_line("", 3), "");
    // Whatever the input, the result never holds CR or LF and fits.
    const std::string nasty = "x\r\n\r\n\x01\x02\xC3";
    const std::string clean = sanitise_line(nasty, 6);
    EXPECT_LE(clean.size(), 6u);
    EXPECT_EQ(clean.find_first_of("\r\n"), std::string::npos);
}

TEST(FormatTime, EpochAndNever) {
    EXPECT_EQ(format_time(0), "never");
    EXPECT_EQ(format_time(1), "1970-01-01 00:00:01 UTC");
    EXPECT_EQ(format_time(1795000000), "2026-11-18 11:06:40 UTC");
}

// Eight octets at a time, then one by one: every position and every octet
// class must stop it exactly where the octet loop would.
TEST(PrintableAsciiPrefix, StopsAtTheFirstOctetOutsidePrintableAscii) {
    const std::string clean(40, 'a');
    EXPECT_EQ(printable_ascii_prefix(clean, 100), 40u);
    EXPECT_EQ(printable_ascii_prefix(clean, 17), 17u);
    EXPECT_EQ(printable_ascii_prefix("", 10), 0u);
    for (const unsigned char bad : {0x00, 0x09, 0x0A, 0x1F, 0x7F, 0x80, 0xC3, 0xFF}) {
        // Lengths that leave a tail after the words (the tail is read as the
        // word that ends the text), and limits inside the text.
        for (const std::size_t len : {5, 9, 13, 24, 31}) {
            for (std::size_t at = 0; at < len; ++at) {
                std::string text(len, ' ');
                for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(0x20 + (i * 7) % 0x5F);
                text[at] = static_cast<char>(bad);
                EXPECT_EQ(printable_ascii_prefix(text, 100), at) << "octet " << int(bad) << " at " << at;
                EXPECT_EQ(printable_ascii_prefix(text, len - 1), std::min(at, len - 1)) << "limit " << len - 1;
                EXPECT_EQ(printable_ascii_prefix(text, at), at) << "the bad octet just past the limit";
            }
        }
    }
    EXPECT_EQ(printable_ascii_prefix(std::string("~ }\x7e", 4), 10), 4u) << "0x7E and 0x20 are printable";
}
