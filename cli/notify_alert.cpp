#include "notify_alert.hpp"

#include <nlohmann/json.hpp>

#include "notice.hpp"
#include "text.hpp"

namespace mailsuspend::cli {

bool automatic_suspension(const std::string& line, AutomaticSuspension& out) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || j.value("action", "") != "suspend" || !j.contains("after") || !j["after"].is_object())
        return false;
    out = AutomaticSuspension{};
    out.target = j.value("target", "");
    out.time = j.value("time", int64_t{0});
    out.seq = j.value("seq", uint64_t{0});
    for (const auto& [service, state] : j["after"].items()) {
        if (!state.is_object() || !state.value("suspended", false)) continue;
        const std::string source = state.value("source", "");
        if (source != "rate" && source != "spam") continue;
        if (state.value("since", int64_t{-1}) != out.time) continue;  // an older one, still in force
        out.source = source;
        out.reason = state.value("reason", "");
        out.locked = state.value("locked", false);
        out.expires = state["expires"].is_number() ? state["expires"].get<int64_t>() : 0;
        return !out.target.empty();
    }
    return false;
}

namespace {

std::string cause_text(const AutomaticSuspension& s) {
    return s.source == "spam" ? "recipients reported its mail as spam" : "it sent more mail than the limits allow";
}

std::string alert_body(const Config& cfg, const AutomaticSuspension& s) {
    const std::string key = sanitise_line(s.target, 320);
    std::string counts = s.reason;
    if (counts.rfind("automatic: ", 0) == 0) counts.erase(0, 11);
    std::string b;
    b += "mailsuspend suspended sending from " + key + " automatically on " + format_time(s.time) + ".\n\n";
    b += "Cause:    " + cause_text(s) + " (" + s.source + ")\n";
    b += "Counts:   " + sanitise_line(counts, 300) + "\n";
    if (s.locked)
        b += "Ends:     never: a repeated automatic suspension, so it is locked (escalated)\n";
    else
        b += "Ends:     " + (s.expires ? format_time(s.expires) : std::string("when lifted")) + "\n";
    b += "Evidence: " + evidence_dir(cfg, s.target) + " (sample messages, if any were kept)\n";
    b += "Audit:    seq " + std::to_string(s.seq) + " in " + cfg.audit_log + "\n\n";
    b += "To lift it:  mailsuspend unsuspend " + key + " --service send" + (s.locked ? " --admin" : "") + "\n";
    return b;
}

}  // namespace

std::string alert_mail(const Config& cfg, const AutomaticSuspension& s) {
    const std::string key = header_text(s.target, 320);
    std::string m;
    m += "To: " + header_text(cfg.alerts.admin_address, 254) + "\n";
    m += "Subject: mailsuspend: sending " + std::string(s.locked ? "locked" : "suspended") + " for " + key + " (" +
         header_text(s.source, 20) + (s.locked ? ", escalated" : "") + ")\n";
    m += "Date: " + rfc5322_date(s.time) + "\n";
    m += "Auto-Submitted: auto-generated\n";
    m += "X-Mailsuspend-Alert: " + header_text(s.source, 20) + "; " + key + "\n";
    m += "MIME-Version: 1.0\n";
    m += "Content-Type: text/plain; charset=utf-8\n";
    m += "Content-Transfer-Encoding: 8bit\n\n";
    m += alert_body(cfg, s);
    return m;
}

}  // namespace mailsuspend::cli
