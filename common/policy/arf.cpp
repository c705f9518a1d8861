#include "arf.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include "text.hpp"
#include "token.hpp"

namespace mailsuspend {

namespace {

struct Header {
    std::string name;  // lower-cased
    std::string value;
};

// Splits at the first empty line: headers, body.
std::pair<std::string_view, std::string_view> split_entity(std::string_view text) {
    if (text.substr(0, 1) == "\n") return {std::string_view(), text.substr(1)};
    const auto blank = text.find("\n\n");
    if (blank == std::string_view::npos) return {text, std::string_view()};
    return {text.substr(0, blank + 1), text.substr(blank + 2)};
}

// Unfolds and splits header fields; false on a line that is neither a field nor a continuation.
bool parse_headers(std::string_view block, std::vector<Header>& out, std::string& error_r) {
    std::size_t pos = 0;
    while (pos < block.size()) {
        auto end = block.find('\n', pos);
        if (end == std::string_view::npos) end = block.size();
        const std::string_view line = block.substr(pos, end - pos);
        pos = end + 1;
        if (line.empty()) continue;
        if (line.front() == ' ' || line.front() == '\t') {
            if (out.empty()) return error_r = "a header block starts with a continuation line", false;
            out.back().value += " " + std::string(trim_blanks(line));
            continue;
        }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0)
            return error_r = "malformed header line '" + sanitise_line(line, 60) + "'", false;
        out.push_back({ascii_lowered(trim_blanks(line.substr(0, colon))), std::string(trim_blanks(line.substr(colon + 1)))});
    }
    return true;
}

const std::string* field(const std::vector<Header>& h, std::string_view name) {
    for (const auto& f : h)
        if (f.name == name) return &f.value;
    return nullptr;
}

struct ContentType {
    std::string type;  // "multipart/report", lower-cased
    std::map<std::string, std::string> params;
};

ContentType parse_content_type(std::string_view value) {
    ContentType ct;
    std::size_t i = value.find(';');
    ct.type = ascii_lowered(trim_blanks(value.substr(0, i)));
    while (i != std::string_view::npos && i < value.size()) {
        ++i;
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        const auto eq = value.find('=', i);
        if (eq == std::string_view::npos) break;
        const std::string name = ascii_lowered(trim_blanks(value.substr(i, eq - i)));
        std::string v;
        i = eq + 1;
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
        if (i < value.size() && value[i] == '"') {
            for (++i; i < value.size() && value[i] != '"'; ++i) {
                if (value[i] == '\\' && i + 1 < value.size()) ++i;
                v += value[i];
            }
            i = value.find(';', i);
        } else {
            const auto semi = value.find(';', i);
            v = std::string(trim_blanks(value.substr(i, semi == std::string_view::npos ? std::string_view::npos : semi - i)));
            i = semi;
        }
        ct.params[name] = v;
    }
    return ct;
}

// The body parts between boundary lines; false when no delimiter occurs.
bool split_multipart(std::string_view body, const std::string& boundary, std::vector<std::string_view>& parts) {
    const std::string delimiter = "--" + boundary;
    std::size_t pos = 0, part_start = std::string_view::npos;
    bool any = false;
    while (pos <= body.size()) {
        auto end = body.find('\n', pos);
        if (end == std::string_view::npos) end = body.size();
        const std::string_view line = trim_blanks(body.substr(pos, end - pos));
        if (line == delimiter || line == delimiter + "--") {
            any = true;
            if (part_start != std::string_view::npos)
                parts.push_back(body.substr(part_start, pos > part_start ? pos - part_start - 1 : 0));
            if (line != delimiter) return true;  // closing delimiter
            part_start = end + 1;
        }
        pos = end + 1;
    }
    // No closing delimiter (a truncated report): keep what there is.
    if (part_start != std::string_view::npos && part_start <= body.size()) parts.push_back(body.substr(part_start));
    return any;
}

std::string angle_stripped(std::string_view v) {
    v = trim_blanks(v);
    const auto lt = v.find('<'), gt = v.rfind('>');
    if (lt != std::string_view::npos && gt != std::string_view::npos && gt > lt) v = v.substr(lt + 1, gt - lt - 1);
    return std::string(trim_blanks(v));
}

}  // namespace

std::optional<ArfReport> parse_arf(std::string_view input, std::string& error_r) {
    if (trim_blanks(input).empty())
        return error_r = "empty input: expected an ARF report (RFC 5965) on stdin", std::nullopt;
    if (input.size() > kMaxReportBytes)
        return error_r = "report is larger than " + std::to_string(kMaxReportBytes) + " octets", std::nullopt;
    std::string text;
    text.reserve(input.size());
    for (std::size_t i = 0; i < input.size(); ++i)
        if (!(input[i] == '\r' && i + 1 < input.size() && input[i + 1] == '\n')) text += input[i];
    const auto [head, body] = split_entity(text);
    std::vector<Header> headers;
    if (!parse_headers(head, headers, error_r)) return error_r = "not a mail message: " + error_r, std::nullopt;
    const std::string* ctype = field(headers, "content-type");
    if (!ctype) return error_r = "not an ARF report: the message has no Content-Type header", std::nullopt;
    const ContentType ct = parse_content_type(*ctype);
    if (ct.type != "multipart/report")
        return error_r = "not an ARF report: Content-Type is '" + sanitise_line(ct.type, 60) +
                         "', expected multipart/report", std::nullopt;
    if (auto rt = ct.params.find("report-type"); rt != ct.params.end() && ascii_lowered(rt->second) != "feedback-report")
        return error_r = "not an ARF report: report-type is '" + sanitise_line(rt->second, 60) +
                         "', expected feedback-report", std::nullopt;
    const auto b = ct.params.find("boundary");
    if (b == ct.params.end() || b->second.empty())
        return error_r = "malformed multipart/report: no boundary parameter", std::nullopt;
    std::vector<std::string_view> parts;
    if (!split_multipart(body, b->second, parts))
        return error_r = "malformed multipart/report: the boundary '" + sanitise_line(b->second, 70) +
                         "' never occurs in the body", std::nullopt;
    ArfReport report;
    bool have_feedback = false, have_original = false;
    for (const auto part : parts) {
        const auto [ph, pb] = split_entity(part);
        std::vector<Header> part_headers;
        if (!parse_headers(ph, part_headers, error_r)) return error_r = "malformed MIME part: " + error_r, std::nullopt;
        const std::string* pct = field(part_headers, "content-type");
        const std::string type = pct ? parse_content_type(*pct).type : "text/plain";
        const std::string* cte = field(part_headers, "content-transfer-encoding");
        std::string content(pb);
        if (cte && ascii_lowered(*cte) == "base64") {
            auto decoded = base64_decode(pb);
            if (!decoded) return error_r = "malformed base64 in the " + type + " part", std::nullopt;
            content = *decoded;
            content.erase(std::remove(content.begin(), content.end(), '\r'), content.end());
        }
        if (type == "message/feedback-report" && !have_feedback) {
            std::vector<Header> fields;
            if (!parse_headers(content, fields, error_r))
                return error_r = "malformed message/feedback-report part: " + error_r, std::nullopt;
            const std::string* ft = field(fields, "feedback-type");
            if (!ft || trim_blanks(*ft).empty())
                return error_r = "malformed message/feedback-report part: no Feedback-Type field", std::nullopt;
            report.feedback_type = ascii_lowered(trim_blanks(*ft));
            if (const auto* v = field(fields, "user-agent")) report.user_agent = sanitise_line(*v, 120);
            if (const auto* v = field(fields, "original-mail-from")) report.original_mail_from = angle_stripped(*v);
            if (const auto* v = field(fields, "source-ip")) report.source_ip = sanitise_line(*v, 64);
            have_feedback = true;
        } else if ((type == "message/rfc822" || type == "text/rfc822-headers") && !have_original) {
            report.original = content;
            const auto [oh, ob] = split_entity(report.original);
            (void)ob;
            std::vector<Header> original_headers;
            std::string ignored;
            parse_headers(oh, original_headers, ignored);  // a damaged original still counts as evidence
            for (const auto& h : original_headers) {
                if (h.name == ascii_lowered(MAILSUSPEND_TOKEN_HEADER)) report.tokens.push_back(h.value);
                if (h.name == "return-path" && report.return_path.empty()) report.return_path = angle_stripped(h.value);
            }
            have_original = true;
        }
    }
    if (!have_feedback) return error_r = "not an ARF report: no message/feedback-report part", std::nullopt;
    return report;
}

}  // namespace mailsuspend
