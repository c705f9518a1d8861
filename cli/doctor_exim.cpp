// mailsuspend doctor: Exim's side, read with exim4 -bV/-bP (doctor_checks.hpp).
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "doctor_checks.hpp"
#include "text.hpp"

namespace mailsuspend::cli::doctor {

std::vector<Router> parse_routers(const std::string& text) {
    std::vector<Router> routers;
    static const std::regex header(R"(^(\S+) router:$)");
    for (const auto& line : lines_of(text)) {
        std::smatch m;
        if (std::regex_match(line, m, header)) {
            routers.push_back({m[1].str(), {}});
        } else if (!routers.empty()) {
            const auto eq = line.find(" = ");
            if (eq != std::string::npos) routers.back().options[line.substr(0, eq)] = line.substr(eq + 3);
            else routers.back().options[line] = "";  // a flag: verify, no_verify...
        }
    }
    return routers;
}

Exim read_exim(const Options& d) {
    Exim e;
    e.binary = d.exim_binary;
    e.config = d.exim_config;
    const RunResult v = e.run({"-bV"});
    if (!v.ok()) return e.error = "exim4 -bV: " + v.what(), e;
    e.heavy = v.out.find("Expand_dlfunc") != std::string::npos;
    const RunResult p = e.run({"-bP", "local_scan_path", "acl_smtp_mail", "acl_smtp_rcpt", "exim_user", "exim_group"});
    if (!p.ok()) return e.error = "exim4 -bP: " + p.what(), e;
    for (const auto& line : lines_of(p.out)) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) e.main[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
    }
    const RunResult r = e.run({"-bP", "routers"});
    if (!r.ok()) return e.error = "exim4 -bP routers: " + r.what(), e;
    e.routers = parse_routers(r.out);
    const RunResult c = e.run({"-bP", "config"});
    if (!c.ok()) return e.error = "exim4 -bP config: " + c.what(), e;
    e.full_config = c.out;
    return e;
}

Check exim_unusable(const char* name, const Exim& e) {
    return fail(name, "Exim's config cannot be read: " + e.error,
                "install exim4-daemon-heavy and correct the config exim4 names");
}

const char* kSplitHint = " (Debian split config: /etc/exim4/conf.d/; unsplit: the .include lines in "
                         "exim-local-scan/README.md), then `update-exim4.conf && systemctl restart exim4`";

// The lines of one section ("acl", "transports", "retry"...) of `exim4 -bP config`.
std::vector<std::string> section_of(const std::string& config, const std::string& section) {
    std::vector<std::string> lines;
    bool inside = false;
    std::istringstream in(config);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("begin ", 0) == 0) inside = trim(line) == "begin " + section;
        else if (inside) lines.push_back(line);
    }
    return lines;
}

// The lines of each ACL in `exim4 -bP config`, by name.
std::map<std::string, std::vector<std::string>> acls_of(const std::string& config) {
    std::map<std::string, std::vector<std::string>> acls;
    static const std::regex acl_name(R"(^\s*([A-Za-z0-9_]+):\s*$)");
    std::string current;
    for (const std::string& line : section_of(config, "acl")) {
        std::smatch m;
        if (trim(line).rfind("#", 0) == 0) continue;
        if (std::regex_match(line, m, acl_name)) current = m[1].str();
        else if (!current.empty()) acls[current].push_back(trim(line));
    }
    return acls;
}

// Does the ACL named start call mailsuspend's function fn, itself or through `acl = X`?
bool acl_calls(const std::map<std::string, std::vector<std::string>>& acls, const std::string& start,
               const std::string& fn, int depth = 0) {
    auto it = acls.find(start);
    if (it == acls.end() || depth > 8) return false;
    static const std::regex nested(R"(^acl\s*=\s*([A-Za-z0-9_]+))");
    for (const auto& line : it->second) {
        if (line.find("{" + fn + "}") != std::string::npos) return true;
        std::smatch m;
        if (std::regex_search(line, m, nested) && acl_calls(acls, m[1].str(), fn, depth + 1)) return true;
    }
    return false;
}

Check check_exim_wiring(const Exim& e) {
    const char* name = "exim_wiring";
    if (!e.error.empty()) return exim_unusable(name, e);
    const std::string so = e.main.count("local_scan_path") ? e.main.at("local_scan_path") : "";
    if (so.empty())
        return fail(name, "local_scan_path is not set in " + e.where() +
                              ": Exim never loads mailsuspend (no send checks, no rate limits)",
                    std::string("install mailsuspend-main") + (e.heavy ? "" : "-light") + kSplitHint);
    if (::access(so.c_str(), R_OK) != 0)
        return fail(name, "local_scan_path = " + so + ": " + errno_text(), "install the module there or correct local_scan_path");
    if (!e.heavy) return pass(name, "local_scan_path = " + so + " (light: no ACLs or routers to wire)");
    const auto acls = acls_of(e.full_config);
    const std::pair<const char*, const char*> wanted[] = {{"acl_smtp_mail", "mailsuspend_send"},
                                                          {"acl_smtp_rcpt", "mailsuspend_rcpt"}};
    for (const auto& [option, fn] : wanted) {
        const std::string acl = e.main.count(option) ? e.main.at(option) : "";
        if (!acl_calls(acls, acl, fn))
            return fail(name, std::string(option) + " = " + (acl.empty() ? "(unset)" : acl) +
                                  " does not run mailsuspend's check (" + fn + "): " +
                                  (std::string(option) == "acl_smtp_mail"
                                       ? "suspended senders are refused only after DATA"
                                       : "reject-mode recipients are not refused at RCPT"),
                        std::string("install mailsuspend-main and mailsuspend-acl (MAIN_ACL_CHECK_MAIL = "
                                    "acl_mailsuspend_mail, MAIN_ACL_CHECK_RCPT = acl_mailsuspend_rcpt)") +
                            kSplitHint);
    }
    return pass(name, "local_scan_path = " + so + "; acl_smtp_mail and acl_smtp_rcpt run mailsuspend's checks");
}

bool router_is(const Router& r, const char* fn) { return r.get("data").find(std::string("{") + fn + "}") != std::string::npos; }

// Routers that deliver or expand an address (a user's .forward, filter,
// pipe, alias, or a local mailbox) must come after mailsuspend's.
bool can_reach_user(const Router& r) {
    const std::string driver = r.get("driver");
    return driver == "redirect" || driver == "accept" || driver == "queryprogram";
}

// Held mail (suspend --hold) must meet mailsuspend_hold before any router
// that can route it anywhere, remote ones (dnslookup, manualroute) included.
std::optional<std::string> hold_router_problem(const Exim& e) {
    for (std::size_t i = 0; i < e.routers.size(); ++i) {
        if (router_is(e.routers[i], "mailsuspend_held")) return std::nullopt;
        if (!router_is(e.routers[i], "mailsuspend_route") && !router_is(e.routers[i], "mailsuspend_queued"))
            return "router " + e.routers[i].name + " comes before mailsuspend_hold: mail held with --hold "
                                                   "(or limits.action / spam.action = \"hold\") can leave through it";
    }
    return std::string("Exim has no mailsuspend_hold router: mail held with --hold (or limits.action / "
                       "spam.action = \"hold\") is delivered as usual");
}

Check check_exim_routers(const Exim& e) {
    const char* name = "exim_routers";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (!e.heavy) return pass(name, "light: no routers (receive modes are applied after DATA, see exim_build)");
    const std::string fix = std::string("install mailsuspend-routers first among the routers "
                                        "(/etc/exim4/conf.d/router/050_mailsuspend, or .include it right after "
                                        "`begin routers`)") + kSplitHint;
    std::optional<std::size_t> receive, queued;
    for (std::size_t i = 0; i < e.routers.size(); ++i) {
        if (router_is(e.routers[i], "mailsuspend_route") && !receive) receive = i;
        if (router_is(e.routers[i], "mailsuspend_queued") && !queued) queued = i;
    }
    if (!receive || !queued)
        return fail(name, std::string("Exim has no ") +
                              (!receive ? "mailsuspend_receive router: mail for recipients suspended in discard "
                                          "or queue mode is delivered as usual (the modes are silently not applied)"
                                        : "mailsuspend_fail_queued router: --fail-queued does nothing"),
                    fix);
    const std::size_t first = std::min(*receive, *queued);
    for (std::size_t i = 0; i < first; ++i)
        if (can_reach_user(e.routers[i]) && !router_is(e.routers[i], "mailsuspend_held"))
            return fail(name, "router " + e.routers[i].name + " (driver " + e.routers[i].get("driver") +
                                  ") comes before " + e.routers[first].name +
                                  ": a suspended recipient's forwarder, filter, pipe, alias or mailbox "
                                  "is reached before mailsuspend decides",
                        fix);
    if (auto problem = hold_router_problem(e)) return fail(name, *problem, fix);
    return pass(name, "mailsuspend_hold comes first, " + e.routers[*queued].name + " and " + e.routers[*receive].name +
                          " before every router that can reach a user's forwarder, filter or mailbox");
}

Check check_exim_build(const Exim& e) {
    const char* name = "exim_build";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (e.heavy) return pass(name, "heavy (Expand_dlfunc): checks at MAIL FROM and RCPT, receive modes by the routers");
    return pass(name, "light (no ${dlfunc}): only local_scan runs, after DATA. Not enforced with light: "
                      "send refusals at MAIL FROM (they come after DATA), reject mode for one recipient among "
                      "others (dropped, sender not told), queue mode per recipient (the whole message is "
                      "frozen, no expiry bounce), --fail-queued, suspensions made after a message was "
                      "accepted; for all of it install exim4-daemon-heavy (exim-local-scan/README.md)");
}

// Seconds in an Exim time ("4d", "1d12h", "15m"); nullopt when not one.
std::optional<int64_t> exim_time(const std::string& text) {
    static const std::regex part(R"((\d+)([smhdw]?))");
    int64_t total = 0;
    std::size_t at = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), part), end; it != end; ++it) {
        if (static_cast<std::size_t>(it->position()) != at) return std::nullopt;
        const int64_t n = std::stoll((*it)[1].str());
        const char unit = (*it)[2].length() ? (*it)[2].str()[0] : 's';
        total += n * (unit == 'w' ? 604800 : unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : 1);
        at += static_cast<std::size_t>(it->length());
    }
    if (at != text.size() || text.empty()) return std::nullopt;
    return total;
}

struct RetryRule {
    std::string text, pattern;
    int64_t give_up = 0;  // the last cutoff time: Exim fails the address after it
};

std::vector<RetryRule> retry_rules(const std::string& config) {
    std::vector<RetryRule> rules;
    for (const std::string& line : section_of(config, "retry")) {
        const std::string t = trim(line);
        if (t.empty() || t.front() == '#') continue;
        RetryRule r{t, split(t, " \t").front(), 0};
        static const std::regex cutoff(R"(\b[FGH],([0-9smhdw]+))");
        for (std::sregex_iterator it(t.begin(), t.end(), cutoff), end; it != end; ++it)
            if (auto s = exim_time((*it)[1].str())) r.give_up = std::max(r.give_up, *s);
        rules.push_back(r);
    }
    return rules;
}

Check check_exim_retry(const Exim& e, const std::optional<Config>& cfg) {
    const char* name = "exim_retry";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    if (!e.heavy) return pass(name, "light: held mail is frozen, not retried (retry rules do not apply)");
    const std::string expiry = format_duration(cfg->queue_expiry);
    for (const auto& r : retry_rules(e.full_config)) {
        if (r.pattern != "*") continue;  // the catch-all rule governs the mailboxes
        if (r.give_up > cfg->queue_expiry)
            return pass(name, "retry rule `" + r.text + "` gives up after " + format_duration(r.give_up) +
                                  ", later than delivery.queue_expiry (" + expiry + ")");
        return fail(name, "Exim's retry rule `" + r.text + "` gives up after " + format_duration(r.give_up) +
                              ", not later than delivery.queue_expiry (" + expiry +
                              "): mail held for a suspended mailbox bounces with Exim's retry timeout "
                              "before mailsuspend's expiry",
                    "make the rule's last time longer than " + expiry + " (Debian: F,4d,6h -> F,5d,6h in "
                    "/etc/exim4/conf.d/retry/30_exim4-config, then update-exim4.conf), or lower "
                    "delivery.queue_expiry below " + format_duration(r.give_up));
    }
    return fail(name, "Exim has no catch-all retry rule (`* * ...`): held mail is not retried as expected",
                "add `*  *  F,2h,15m; G,16h,1h,1.5; F,5d,6h` to the retry section of " + e.where());
}

// The smtp transports of `exim4 -bP config` whose event_action does not
// report delivery outcomes to mailsuspend (mailsuspend_outcome).
std::vector<std::string> smtp_transports_without_events(const std::string& config) {
    struct Transport {
        std::string name;
        bool smtp = false, reports = false;
    };
    std::vector<Transport> transports;
    static const std::regex header(R"(^\s*([A-Za-z0-9_-]+):\s*$)");
    for (const std::string& line : section_of(config, "transports")) {
        const std::string t = trim(line);
        std::smatch m;
        if (std::regex_match(line, m, header)) transports.push_back({m[1].str()});
        else if (!transports.empty() && t == "driver = smtp") transports.back().smtp = true;
        else if (!transports.empty() && t.rfind("event_action = ", 0) == 0)
            transports.back().reports = t.find("{mailsuspend_outcome}") != std::string::npos;
    }
    std::vector<std::string> missing;
    for (const auto& tr : transports)
        if (tr.smtp && !tr.reports) missing.push_back(tr.name);
    return missing;
}

Check check_exim_events(const Exim& e, const std::optional<Config>& cfg) {
    const char* name = "exim_events";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    if (cfg->limits.failed_share_percent <= 0) return pass(name, "limits.failed_share_percent is off: no delivery events needed");
    if (!e.heavy)
        return fail(name, "limits.failed_share_percent is on, but exim4-daemon-light has no ${dlfunc}: no delivery "
                          "outcome is counted", "install exim4-daemon-heavy, or set limits.failed_share_percent = 0");
    const auto missing = smtp_transports_without_events(e.full_config);
    if (!missing.empty())
        return fail(name, "limits.failed_share_percent is on, but the smtp transport " + missing.front() +
                              (missing.size() > 1 ? " (and " + std::to_string(missing.size() - 1) + " more)" : "") +
                              " has no event_action = MAILSUSPEND_EVENT_ACTION: its deliveries, bounces and "
                              "deferrals are not counted (Exim raises them only for the transport's own event_action)",
                    "add `.ifdef MAILSUSPEND_EVENT_ACTION` / `event_action = MAILSUSPEND_EVENT_ACTION` / `.endif` "
                    "to that transport (Debian split config: a .rul copy of its conf.d/transport file; "
                    "exim-local-scan/README.md)" + std::string(kSplitHint));
    return pass(name, "every smtp transport reports delivery outcomes (limits.failed_share_percent)");
}

std::optional<Identity> exim_identity(const Exim& e, std::string& error_r) {
    if (!e.error.empty()) return error_r = e.error, std::nullopt;
    const std::string user = e.main.count("exim_user") ? e.main.at("exim_user") : "";
    const std::string group = e.main.count("exim_group") ? e.main.at("exim_group") : "";
    // Exim drops every supplementary group (setgroups(0, NULL)); it never uses
    // initgroups for itself, so /etc/group membership does not count.
    return identity_of("Exim's processes", user, group, {}, error_r);
}

Check check_exim_access(const Exim& e, const std::optional<Config>& cfg) {
    const char* name = "exim_access";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    std::string error;
    const auto id = exim_identity(e, error);
    return access_check(name, id, error, writer_files(*cfg),
                        "Exim keeps no supplementary groups: store.write_group must be Exim's own group (" +
                            (e.main.count("exim_group") ? e.main.at("exim_group") : std::string("Debian-exim")) +
                            ") and `mailsuspend init` must have run since (it gives that group the store "
                            "directory's ACL, the lock, journal and counters 0660 and the audit log)");
}

}  // namespace mailsuspend::cli::doctor
