// ARF: parsing of an RFC 5965 feedback report (multipart/report;
// report-type=feedback-report) for `mailsuspend report-spam --arf`.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

// Largest ARF report read.
constexpr std::size_t kMaxReportBytes = 10 * 1024 * 1024;

struct ArfReport {
    std::string feedback_type;       // lower-cased, e.g. "abuse"
    std::string user_agent;
    std::string original_mail_from;  // as in the report, <> stripped
    std::string source_ip;
    std::string original;            // the reported message (headers, maybe body), LF line ends
    std::vector<std::string> tokens; // every X-Mailsuspend-Token value in the original's header
    std::string return_path;         // the original's Return-Path, <> stripped
};

// Parses a report; nullopt and a one-line error_r for anything that is not a
// well-formed multipart/report with a message/feedback-report part.
std::optional<ArfReport> parse_arf(std::string_view text, std::string& error_r);

}  // namespace mailsuspend
