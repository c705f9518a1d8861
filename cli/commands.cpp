// The mailsuspend commands (commands.hpp).  Each calls the core (common/) and
// prints; every rule lives in the core.
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <sys/acl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <iostream>

#include "commands.hpp"
#include "arf.hpp"
#include "config.hpp"
#include "config_snapshot.hpp"
#include "count_log.hpp"
#include "counters.hpp"
#include "files.hpp"
#include "login_pairs.hpp"
#include "mailsuspend/mailsuspend.h"
#include "metrics.hpp"
#include "notice.hpp"
#include "operations.hpp"
#include "outbox.hpp"
#include "policy.hpp"
#include "store.hpp"
#include "text.hpp"
#include "token.hpp"
#include "usage.hpp"

using nlohmann::json;

namespace mailsuspend::cli {

// Shared with the other command files (commands.hpp).
int finish(const Outcome& o) {
    if (!o.message.empty()) (o.ok() ? std::cout : std::cerr) << o.message << "\n";
    return static_cast<int>(o.code);
}

Actor current_actor(const std::string& given) {
    Actor a;
    a.uid = ::getuid();
    const passwd* pw = ::getpwuid(a.uid);
    a.name = pw ? pw->pw_name : "uid " + std::to_string(a.uid);
    if (!given.empty()) a.name += " (" + given + ")";
    return a;
}

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

// The config, or an exit code (2: the file is bad).
std::optional<Config> config_or_exit(const Options& o, int& code) {
    std::string error;
    auto cfg = load_config(o.config, error);
    if (!cfg) {
        std::cerr << "mailsuspend: " << error << "\n";
        code = static_cast<int>(Exit::bad_input);
    }
    // For the fresh mail processes that read it (config_snapshot.hpp); one
    // that is not kept costs them a parse, which `doctor` reports.
    std::string why;
    keep_config_snapshot(o.config, MAILSUSPEND_SNAPSHOT_DIR, cfg ? &*cfg : nullptr, why);
    return cfg;
}

// Takes the writer lock (saying so when it waits; up to store.admin_lock_timeout),
// then applies what Exim handed to the outbox while the lock was taken.
// convert_older: `rebuild` converts a store in an older layout.
std::unique_ptr<StoreWriter> open_writer(const Config& cfg, bool init, std::string& error_r,
                                         bool convert_older = false) {
    LockWait wait;
    wait.waiting = [&](const std::string& holder) {
        std::cerr << "mailsuspend: waiting for the store lock held by " << holder << " (up to "
                  << format_duration(cfg.admin_lock_timeout) << ", store.admin_lock_timeout)\n";
    };
    auto writer = StoreWriter::open(cfg, init, error_r, &wait, convert_older);
    if (!writer) return writer;
    std::vector<std::string> warnings, done;
    outbox_apply(cfg, *writer, warnings, &done);
    for (const auto& d : done) std::cerr << "mailsuspend: " << d << "\n";
    for (const auto& w : warnings) std::cerr << "mailsuspend: warning: " << w << "\n";
    return writer;
}

int with_writer(const Options& o, bool init, const std::function<int(const Config&, StoreWriter&)>& fn,
                bool convert_older = false) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string error;
    auto writer = open_writer(*cfg, init, error, convert_older);
    if (!writer) {
        std::cerr << "mailsuspend: " << error << "\n";
        return static_cast<int>(Exit::failure);
    }
    return fn(*cfg, *writer);
}

// Runs one or more changes in one session and commits them.
int change(const Options& o, const std::function<Outcome(Session&)>& body) {
    if (std::string why; !check_free_text(o.actor, 64, why))
        return finish({Exit::bad_input, "--actor " + why});
    return with_writer(o, false, [&](const Config& cfg, StoreWriter& w) {
        Session session(cfg, w, current_actor(o.actor), now());
        const Outcome result = body(session);
        if (!result.ok()) return finish(result);
        std::vector<std::string> warnings;
        if (const Outcome c = session.commit(warnings); !c.ok()) return finish(c);
        for (const auto& warning : warnings) std::cerr << "mailsuspend: warning: " << warning << "\n";
        return finish(result);
    });
}

namespace {

// --service LIST as a mask; false with error (exit 2) naming the bad part.
bool services_option(const std::string& list, uint8_t& mask, Outcome& error) {
    std::string why;
    auto parsed = parse_service_list(list, why);
    if (!parsed) error = {Exit::bad_input, "--service: " + why};
    else mask = *parsed;
    return parsed.has_value();
}

std::optional<SuspendArgs> suspend_args(const Options& o, Outcome& error) {
    SuspendArgs a;
    a.target = o.target;
    if (!services_option(o.services, a.services, error)) return std::nullopt;
    std::string why;
    a.reason = o.reason;
    if (o.duration_given || !o.duration.empty()) {
        auto d = parse_duration(o.duration, why);
        if (!d || *d == 0) return error = {Exit::bad_input, "--for: " + (d ? "must be positive" : why)}, std::nullopt;
        a.duration = *d;
    }
    if (!o.mode.empty()) {
        a.mode = parse_mode(o.mode);
        if (!a.mode) return error = {Exit::bad_input, "--mode: must be deliver, discard, reject or queue"}, std::nullopt;
    }
    a.lock = o.lock;
    a.fail_queued = o.fail_queued;
    a.hold = o.hold;
    return a;
}

// Parses a command's arguments (exit 2 naming the bad one), then runs op in a session.
template <typename Args>
int parse_and_change(const Options& o, std::optional<Args> (*parse)(const Options&, Outcome&),
                     Outcome (Session::*op)(const Args&)) {
    Outcome error;
    auto args = parse(o, error);
    if (!args) return finish(error);
    return change(o, [&](Session& s) { return (s.*op)(*args); });
}

std::optional<UnsuspendArgs> unsuspend_args(const Options& o, Outcome& error) {
    UnsuspendArgs a;
    a.target = o.target;
    if (!o.services.empty() && !services_option(o.services, a.services, error)) return std::nullopt;
    a.admin = o.admin;
    a.self_service = o.self_service;
    return a;
}

}  // namespace

int cmd_suspend(const Options& o) { return parse_and_change(o, suspend_args, &Session::suspend); }

int cmd_unsuspend(const Options& o) { return parse_and_change(o, unsuspend_args, &Session::unsuspend); }

int cmd_set_mode(const Options& o) {
    auto mode = parse_mode(o.mode);
    if (!mode) return finish({Exit::bad_input, "mode must be deliver, discard, reject or queue"});
    return change(o, [&](Session& s) { return s.set_mode(o.target, *mode); });
}

namespace {

// Sends AUP notices still pending (e.g. an automatic suspension in Exim
// whose notice failed or had no sample call after it).  Returns the exit code.
int send_notices(const Config& cfg) {
    std::vector<std::string> warnings;
    const int sent = send_pending_notices(cfg, "", warnings);
    for (const auto& w : warnings) std::cerr << "mailsuspend: warning: " << w << "\n";
    if (sent) std::cout << "sent " << sent << " pending AUP notice(s)\n";
    return 0;
}

// mailsuspend_last_sweep_timestamp_seconds: in the writers' metrics file.
void record_sweep(const Config& cfg) {
    std::string error;
    auto w = metrics::Writer::open(metrics::path_of(cfg.store_path, metrics::HostClass::exim), error);
    if (!w || !w->set(metrics::kLastSweep, static_cast<uint64_t>(now())))
        std::cerr << "mailsuspend: warning: sweep time not recorded for metrics: " << error << "\n";
}

}  // namespace

int cmd_sweep(const Options& o) {
    const int rc = change(o, [&](Session& s) {
        int lifted = 0;
        return s.sweep(lifted);
    });
    if (rc != 0) return rc;
    // Reasons lifted since the last sweep (by it or by anyone) still sit in
    // superseded record images the read group can read: rewrite them away.
    const int scrubbed = with_writer(o, false, [&](const Config&, StoreWriter& w) {
        std::string error;
        if (const uint64_t fixed = w.repair_derived())
            std::cerr << "mailsuspend: warning: repaired the readers' tags or domain filter of " << fixed
                      << " slot(s) (a damaged store? run: mailsuspend check)\n";
        if (!w.drop_lifted_text(error))
            return finish({Exit::failure, "lifted reasons not yet removed from the store: " + error});
        return 0;
    });
    if (scrubbed != 0) return scrubbed;
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    record_sweep(*cfg);
    return send_notices(*cfg);
}

int cmd_send_notices(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    return cfg ? send_notices(*cfg) : code;
}

namespace {

bool read_limited(std::istream& in, std::string& out) {
    out.clear();
    char chunk[65536];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
        out.append(chunk, static_cast<std::size_t>(in.gcount()));
        if (out.size() > kMaxReportBytes) return false;
    }
    return true;
}

// The report's subject and evidence: ADDRESS and --evidence files, or an ARF report on stdin.
Outcome spam_report_of(const Config& cfg, const Options& o, SpamReport& report) {
    if (o.arf == !o.target.empty())
        return {Exit::bad_input, o.arf ? "give either ADDRESS or --arf (the report names the sender), not both"
                                       : "give ADDRESS, or --arf with an ARF report on stdin"};
    if (o.token_only && !o.arf) return {Exit::bad_input, "--token-only goes with --arf"};
    for (const auto& file : o.evidence) {
        std::ifstream in(file, std::ios::binary);
        std::string text;
        if (!in) return {Exit::bad_input, "--evidence " + file + ": cannot read the file"};
        if (!read_limited(in, text))
            return {Exit::bad_input, "--evidence " + file + ": larger than " + std::to_string(kMaxReportBytes) + " octets"};
        report.evidence.push_back(std::move(text));
    }
    if (!o.arf) {
        report.address = o.target;
        report.origin = "cli";
        return {};
    }
    std::string input, error;
    if (!read_limited(std::cin, input))
        return {Exit::bad_input, "ARF report: larger than " + std::to_string(kMaxReportBytes) + " octets"};
    const auto arf = parse_arf(input, error);
    if (!arf) return {Exit::bad_input, "ARF report: " + error};
    if (arf->feedback_type != "abuse")
        return {Exit::ok, "ignored: Feedback-Type '" + sanitise_line(arf->feedback_type, 40) +
                              "' is not a spam complaint (only abuse counts); nothing recorded"};
    Attribution who;
    if (Outcome a = attribute_arf(cfg, *arf, o.token_only, now(), who); !a.ok())
        return {a.code, "ARF report: " + a.message};
    report.address = who.address;
    report.message = who.message;
    report.origin = "arf, attributed by " + who.how;
    if (!arf->user_agent.empty()) report.origin += ", from " + arf->user_agent;
    if (!arf->original.empty()) report.evidence.push_back(arf->original);
    std::cout << "ARF report attributed to " << sanitise_line(who.address, 320) << " by " << who.how
              << (who.token_issued ? " (token issued " + format_time(who.token_issued) + ")" : "") << "\n";
    return {};
}

}  // namespace

namespace {

// "5 of 600 messages_per_day (24h window); falls back by 3 at ..., under the limit at ..."
void print_counter(const CounterUsage& c) {
    std::cout << "  " << c.limit_name;
    if (c.kind == CounterKind::ip_offdomain_rcpts) std::cout << " (" << c.key << ")";
    std::cout << ": " << c.count << (c.limit > 0 ? " of " + std::to_string(c.limit) : " (no limit)") << " within "
              << c.window / 3600 << "h\n";  // windows are whole hours
    if (c.limit > 0 && c.count >= c.limit)
        std::cout << "    AT THE LIMIT: the next one is refused until " << format_time(c.under_limit_at) << "\n";
    if (c.falls_back.empty()) return;
    std::cout << "    falls back by " << c.falls_back.front().count << " at " << format_time(c.falls_back.front().leaves)
              << "; to 0 at " << format_time(c.clear_at) << "\n";
}

}  // namespace

int cmd_usage(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string key, ip;
    if (Outcome s = usage_subject(*cfg, o.target, o.ip, key, ip); !s.ok()) return finish(s);
    std::unique_ptr<Counters> counters;
    if (Outcome c = open_counters(*cfg, counters); !c.ok()) return finish(c);
    const Usage u = usage_of(*cfg, *counters, key, ip, now());
    if (o.json) {
        std::cout << usage_json(u).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        return 0;
    }
    std::cout << key << "  (rate counters at " << format_time(u.now) << ")\n";
    for (const auto& c : u.counters) print_counter(c);
    return 0;
}

int cmd_reset_usage(const Options& o) {
    return change(o, [&](Session& s) { return s.reset_usage(o.target, o.ip); });
}

int cmd_report_spam(const Options& o) {
    if (std::string why; !check_free_text(o.actor, 64, why))
        return finish({Exit::bad_input, "--actor " + why});
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    SpamReport report;
    if (Outcome r = spam_report_of(*cfg, o, report); !r.ok() || report.address.empty()) return finish(r);
    std::vector<std::string> warnings;
    SpamResult result;
    {
        std::string error;
        auto writer = open_writer(*cfg, false, error);
        if (!writer) return finish({Exit::failure, error});
        result = record_spam_report(*cfg, *writer, current_actor(o.actor), report, now(), warnings);
    }  // the writer lock is released before mail goes out
    if (result.outcome.ok() && result.suspension.suspended_now) {
        const int sent = send_pending_notices(*cfg, result.key, warnings);
        std::string why;
        const std::string contact = abuse_contact(*cfg, result.key, why);
        if (sent) result.outcome.message += "; AUP notice sent to " + contact;
    }
    for (const auto& w : warnings) std::cerr << "mailsuspend: warning: " << w << "\n";
    return finish(result.outcome);
}

// Prints a sender token for ACCOUNT, or (--open) the account inside a token.
int cmd_token(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string error;
    const auto key = load_token_key(cfg->store_path, error);
    if (!key) return finish({Exit::failure, error});
    if (o.open) {
        const auto t = open_token(*key, o.target, error);
        if (!t) return finish({Exit::bad_input, error});
        return finish({Exit::ok, t->account + " (issued " + format_time(t->issued) + ")"});
    }
    std::string account;
    if (Outcome n = normalise_target(*cfg, o.target, account); !n.ok()) return finish(n);
    char buf[kTokenMaxText + 1];
    if (account.front() == '@' || seal_token(*key, account, now(), buf, sizeof buf) == 0)
        return finish({Exit::bad_input, "cannot make a token for " + account});
    return finish({Exit::ok, buf});
}

namespace {

std::unique_ptr<StoreReader> open_reader(const Config& cfg) {
    std::string error;
    auto reader = StoreReader::open(cfg.store_path, error);
    if (!reader) std::cerr << "mailsuspend: " << error << "\n";
    return reader;
}

void print_status(const json& j) {
    std::cout << j["target"].get<std::string>() << "  (delivery mode for held mail: "
              << j["delivery_mode"].get<std::string>() << ")\n";
    for (const auto& [name, s] : j["services"].items()) {
        std::cout << "  " << name << std::string(14 - name.size(), ' ');
        if (!s["suspended"].get<bool>()) {
            std::cout << "active\n";
            continue;
        }
        std::cout << "SUSPENDED since " << format_time(s["since"].is_null() ? 0 : s["since"].get<int64_t>())
                  << ", expires " << format_time(s["expires"].is_null() ? 0 : s["expires"].get<int64_t>())
                  << ", " << s["source"].get<std::string>() << ", " << s["scope"].get<std::string>()
                  << (s["locked"].get<bool>() ? ", LOCKED" : "");
        // A reason written around the CLI (the C++ API, a restored file) may hold
        // control characters: never send them raw to the admin's terminal.
        if (!s["reason"].get<std::string>().empty())
            std::cout << ": " << sanitise_line(s["reason"].get<std::string>(), kMaxReason);
        std::cout << "\n";
    }
}

}  // namespace

// The effective state of o.target (its record and its domain's) as status_json,
// or nullopt with code set (the error is printed).  key: the normalised target.
std::optional<json> effective_status(const Options& o, std::string& key, int& code) {
    auto cfg = config_or_exit(o, code);
    if (!cfg) return std::nullopt;
    if (Outcome n = normalise_target(*cfg, o.target, key); !n.ok()) return code = finish(n), std::nullopt;
    auto reader = open_reader(*cfg);
    if (!reader) return code = static_cast<int>(Exit::failure), std::nullopt;
    TargetRecord mailbox, domain;
    const bool is_domain = key.front() == '@';
    const LookupStatus m = is_domain ? LookupStatus::absent : reader->read(key, mailbox);
    const LookupStatus d = reader->read(is_domain ? key : std::string(domain_key_of(key)), domain);
    if (m == LookupStatus::unavailable || d == LookupStatus::unavailable)
        return code = finish({Exit::failure, "store unavailable: " + reader->last_error()}), std::nullopt;
    return status_json(*cfg, key, m == LookupStatus::found ? &mailbox : nullptr,
                       d == LookupStatus::found ? &domain : nullptr, now());
}


int cmd_status(const Options& o) {
    int code = 0;
    std::string key;
    const auto j = effective_status(o, key, code);
    if (!j) return code;
    if (o.json) std::cout << j->dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else print_status(*j);
    return 0;
}

int cmd_list(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    uint8_t filter = kAllServicesMask;
    if (!o.services.empty()) {
        auto s = parse_service(o.services);
        if (!s) return finish({Exit::bad_input, "--service: unknown service '" + o.services + "'"});
        filter = static_cast<uint8_t>(1u << static_cast<int>(*s));
    }
    auto reader = open_reader(*cfg);
    if (!reader) return static_cast<int>(Exit::failure);
    json all = json::array();
    const int64_t t = now();
    const bool ok = reader->for_each([&](const TargetRecord& r) {
        const uint8_t mask = r.in_force_mask(t) & filter;
        if (!mask) return;
        if (o.json) all.push_back(record_json(r, t));
        else std::cout << r.key << "  " << service_list(r.in_force_mask(t)) << "\n";
    });
    if (!ok) return finish({Exit::failure, "store unavailable: " + reader->last_error()});
    if (o.json) std::cout << all.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return 0;
}

int cmd_can_delete(const Options& o) {
    int code = 0;
    std::string key;
    const auto j = effective_status(o, key, code);
    if (!j) return code;
    std::string suspended;
    for (const auto& [name, s] : (*j)["services"].items())
        if (s["suspended"].get<bool>()) suspended += (suspended.empty() ? "" : ",") + name;
    if (!suspended.empty())
        return finish({Exit::refused, key + " cannot be deleted while suspended (" + suspended +
                                          "): lift the suspension first"});
    return finish({Exit::ok, key + " may be deleted"});
}

namespace {

bool give_to_write_group(const Config& cfg, const std::string& path, mode_t mode, std::string& error_r) {
    if (cfg.write_group.empty()) return true;
    const struct group* gr = ::getgrnam(cfg.write_group.c_str());
    if (!gr) return error_r = "group '" + cfg.write_group + "' does not exist", false;
    if (::chown(path.c_str(), static_cast<uid_t>(-1), gr->gr_gid) != 0 || ::chmod(path.c_str(), mode) != 0)
        return error_r = path + ": cannot give it to group " + cfg.write_group + ": " + std::strerror(errno),
               false;
    return true;
}

// Sets path's access ACL to text.  false: error_r says why when the ACL
// could not be made, else saved_errno holds acl_set_file's errno.
bool set_access_acl(const std::string& path, const std::string& text, int& saved_errno, std::string& error_r) {
    acl_t acl = ::acl_from_text(text.c_str());
    if (!acl) return error_r = "cannot make the ACL " + text + ": " + std::strerror(errno), false;
    const int rc = ::acl_set_file(path.c_str(), ACL_TYPE_ACCESS, acl);
    saved_errno = errno;
    ::acl_free(acl);
    return rc == 0;
}

// Exim drops every supplementary group (exim.c: setgroups(0, NULL); it never
// calls initgroups for itself), so its processes run as write_group's user and
// group only and cannot enter a directory of read_group.  A POSIX ACL entry
// lets write_group traverse and list the store directory too, without giving
// Exim's group to Dovecot or the mail users (that group owns Exim's spool).
bool grant_write_group_traversal(const Config& cfg, std::string& error_r) {
    if (cfg.write_group.empty() || cfg.write_group == cfg.read_group) return true;
    const std::string text = "u::rwx,g::r-x,g:" + cfg.write_group + ":r-x,m::r-x,o::---";
    int saved = 0;
    if (set_access_acl(cfg.store_path, text, saved, error_r)) return true;
    if (!error_r.empty()) return false;
    if (saved == EOPNOTSUPP)
        return error_r = cfg.store_path + ": the filesystem does not support POSIX ACLs, which let " +
                         cfg.write_group + " (Exim) enter the store directory; put store.path on one that does "
                         "(ext4, xfs, btrfs, tmpfs) or mount it with the acl option", false;
    error_r = cfg.store_path + ": cannot let group " + cfg.write_group + " enter it: " + std::strerror(saved);
    return false;
}

// limits.login_ips_per_day is counted by Dovecot's auth process, which runs
// as store.login_group's user (Debian: dovecot) with store.read_group as its
// only extra group: <store>/logins and <store>/login-counters are 0660
// root:login_group, and an ACL entry lets login_group add entries to the
// outbox (02770 root:write_group), where it hands the trigger's suspensions.
// Nothing else of the store becomes writable for it.  Created whatever the
// limit (0 by default), so turning it on needs no init.
// fleet.counters = "fleet": Exim (write_group) notes there whose counts the
// fleet agent should share.
bool create_count_log(const Config& cfg, std::string& error_r) {
    if (!cfg.fleet.enabled || cfg.fleet.counters != FleetConfig::Counters::fleet) return true;
    return CountLog::open(cfg.store_path, true, error_r) &&
           give_to_write_group(cfg, cfg.store_path + "/" + CountLog::kName, 0660, error_r);
}

bool create_login_files(const Config& cfg, std::string& error_r) {
    if (cfg.login_group.empty()) return true;
    const struct group* gr = ::getgrnam(cfg.login_group.c_str());
    if (!gr) {
        std::cerr << "mailsuspend: warning: store.login_group '" << cfg.login_group
                  << "' does not exist: limits.login_ips_per_day cannot be counted (is Dovecot installed?)\n";
        return true;
    }
    if (!LoginPairs::open(cfg.store_path, true, cfg.login_capacity, error_r) ||
        !Counters::open(cfg.store_path, true, cfg.counter_capacity, error_r, Counters::kLoginCountersName))
        return false;
    for (const char* name : {LoginPairs::kFileName, Counters::kLoginCountersName}) {
        const std::string path = cfg.store_path + "/" + name;
        if (::chown(path.c_str(), 0, gr->gr_gid) != 0 || ::chmod(path.c_str(), 0660) != 0)
            return error_r = path + ": cannot give it to group " + cfg.login_group + ": " + std::strerror(errno), false;
    }
    const std::string outbox = outbox_dir(cfg);
    int saved = 0;
    if (set_access_acl(outbox, "u::rwx,g::rwx,g:" + cfg.login_group + ":rwx,m::rwx,o::---", saved, error_r))
        return true;
    if (error_r.empty())
        error_r = outbox + ": cannot let group " + cfg.login_group + " add to it: " + std::strerror(saved);
    return false;
}

// Exim appends its automatic suspensions to the audit log: create it 0660
// for write_group (append_audit would create it 0640, writable by root only).
bool create_audit_log(const Config& cfg, std::string& error_r) {
    if (cfg.audit_log.empty() || ::access(cfg.audit_log.c_str(), F_OK) == 0) return true;
    const int fd = ::open(cfg.audit_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return error_r = cfg.audit_log + ": " + std::strerror(errno) + " (create it writable by " +
                         cfg.write_group + ")",
               false;
    ::close(fd);
    return give_to_write_group(cfg, cfg.audit_log, 0660, error_r);
}

// The event counters: each host class adds only to its own file (metrics.hpp).
bool create_metrics_files(const Config& cfg, std::string& error_r) {
    const std::pair<metrics::HostClass, const std::string*> files[] = {
        {metrics::HostClass::dovecot, &cfg.read_group}, {metrics::HostClass::exim, &cfg.write_group}};
    for (const auto& [host, group] : files) {
        gid_t gid = static_cast<gid_t>(-1);
        if (!group->empty()) {
            const struct group* gr = ::getgrnam(group->c_str());
            if (!gr) return error_r = "group '" + *group + "' does not exist", false;
            gid = gr->gr_gid;
        }
        if (!metrics::create(cfg.store_path, host, gid, error_r)) return false;
    }
    return true;
}

// <store>/dovecot-groups.conf: mail_access_groups with store.read_group by
// number, for the shipped Dovecot snippet's !include_try.  Dovecot resolves a
// name in every mail process (NSS, /etc/group parsed: a quarter of what
// mailsuspend added to an IMAP login, and more on a server with a group per
// account); a number it takes as it is.  Rewritten by every init, so a
// renumbered group is followed; removed when there is no read group.
bool write_dovecot_groups(const Config& cfg, std::string& error_r) {
    const std::string path = cfg.store_path + "/" + kDovecotGroupsFile;
    const struct group* gr = cfg.read_group.empty() ? nullptr : ::getgrnam(cfg.read_group.c_str());
    if (!gr) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            return error_r = path + ": " + std::strerror(errno), false;
        return true;
    }
    const std::string text = "# Written by `mailsuspend init`: store.read_group (" + cfg.read_group +
                             ") by number, so that\n# Dovecot's mail processes need not look the name up "
                             "in /etc/group.\nmail_access_groups = " + std::to_string(gr->gr_gid) + "\n";
    if (!replace_small_file(path, text, 0644)) return error_r = path + ": cannot write: " + std::strerror(errno), false;
    return true;
}

}  // namespace

int cmd_init(const Options& o) {
    return with_writer(o, true, [&](const Config& cfg, StoreWriter& w) {
        std::string error;
        if (!Counters::open(cfg.store_path, true, cfg.counter_capacity, error))
            return finish({Exit::failure, error});
        // Exim (write_group) adds to the counters: Counters::open creates the file 0664 but
        // leaves its group alone, so hand it over here (also repairs stores made before).
        // 0660: members of read_group (mail users among them) must not open it at all.
        if (!give_to_write_group(cfg, cfg.store_path + "/counters", 0660, error) ||
            !grant_write_group_traversal(cfg, error) || !create_evidence_root(cfg, error) || !create_outbox(cfg, error) ||
            !create_login_files(cfg, error) || !create_count_log(cfg, error))
            return finish({Exit::failure, error});
        if (std::string e; !create_audit_log(cfg, e)) std::cerr << "mailsuspend: warning: " << e << "\n";
        if (!create_token_key(cfg.store_path, cfg.write_group, error) || !create_metrics_files(cfg, error) ||
            !write_dovecot_groups(cfg, error))
            return finish({Exit::failure, error});
        const StoreStats s = w.stats();
        return finish({Exit::ok, "store ready at " + cfg.store_path + " (generation " +
                                     std::to_string(s.generation) + ", room for " +
                                     std::to_string(cfg.store_capacity) + " targets)"});
    });
}

int cmd_check(const Options& o) {
    return with_writer(o, false, [&](const Config& cfg, StoreWriter& w) {
        std::vector<std::string> report;
        const bool store_ok = w.check(report);
        // Everything a host process maps is checked: the store, the rate counters, the login tables.
        for (const auto& problems : {Counters::verify(cfg.store_path), LoginPairs::verify(cfg.store_path),
                                     Counters::verify(cfg.store_path, Counters::kLoginCountersName)})
            report.insert(report.end(), problems.begin(), problems.end());
        // Not an inconsistency (the next change creates it): a warning.
        if (std::string e; !notify_file_usable(cfg.store_path, e))
            std::cerr << "mailsuspend: warning: " << e << "\n";
        if (report.empty()) {
            const StoreStats s = w.stats();
            return finish({Exit::ok, "store at " + cfg.store_path + " is consistent: generation " +
                                         std::to_string(s.generation) + ", " +
                                         std::to_string(s.used_slots) + " records, change " +
                                         std::to_string(s.seq)});
        }
        for (const auto& line : report) std::cerr << "mailsuspend: " << line << "\n";
        return finish({Exit::failure, std::to_string(report.size()) + " problem(s) found" +
                                          (store_ok ? std::string()
                                                    : "; `mailsuspend rebuild` rewrites the store from its records")});
    });
}

int cmd_rebuild(const Options& o) {
    return with_writer(o, false, [&](const Config&, StoreWriter& w) {
        std::string error;
        if (!w.rebuild(o.capacity, error)) return finish({Exit::failure, error});
        return finish({Exit::ok, "published generation " + std::to_string(w.stats().generation)});
    }, /*convert_older=*/true);
}

namespace {

// One JSON line of a batch: {"op":"suspend","target":"a@b","services":"imap,pop3",...}
Outcome batch_line(Session& s, const json& j) {
    if (!j.is_object()) return {Exit::bad_input, "not a JSON object"};
    Options o;
    auto text = [&](const char* k, std::string& out) {
        if (!j.contains(k)) return true;
        if (j[k].is_string()) return out = j[k].get<std::string>(), true;
        if (j[k].is_array() && std::string(k) == "services") {
            for (const auto& v : j[k]) {
                if (!v.is_string()) return false;
                out += (out.empty() ? "" : ",") + v.get<std::string>();
            }
            return true;
        }
        return false;
    };
    auto flag = [&](const char* k, bool& out) {
        if (!j.contains(k)) return true;
        if (!j[k].is_boolean()) return false;
        return out = j[k].get<bool>(), true;
    };
    std::string op;
    for (const auto& [k, v] : j.items())
        if (k != "op" && k != "target" && k != "services" && k != "reason" && k != "for" &&
            k != "mode" && k != "lock" && k != "fail_queued" && k != "hold" && k != "admin")
            return {Exit::bad_input, "unknown field '" + k + "'"};
    if (!text("op", op) || !text("target", o.target) || !text("services", o.services) ||
        !text("reason", o.reason) || !text("for", o.duration) || !text("mode", o.mode) ||
        !flag("lock", o.lock) || !flag("fail_queued", o.fail_queued) || !flag("hold", o.hold) ||
        !flag("admin", o.admin))
        return {Exit::bad_input, "a field has the wrong type"};
    o.duration_given = j.contains("for");
    Outcome error;
    if (op == "suspend") {
        auto a = suspend_args(o, error);
        return a ? s.suspend(*a) : error;
    }
    if (op == "unsuspend") {
        auto a = unsuspend_args(o, error);
        return a ? s.unsuspend(*a) : error;
    }
    if (op == "set-mode") {
        auto m = parse_mode(o.mode);
        return m ? s.set_mode(o.target, *m) : Outcome{Exit::bad_input, "bad mode"};
    }
    return {Exit::bad_input, "unknown op '" + op + "' (suspend, unsuspend, set-mode)"};
}

}  // namespace

namespace {

// Bounds on batch input (issue 12, item 11): a batch line is one small JSON
// object (a key of at most 254 octets, a reason of at most 200), so 64 KiB
// is far more than any real line; 100,000 lines (the default store
// capacity) and 32 MiB bound the whole.  Past any of them the batch is
// refused before anything further is read or anything applied.
constexpr std::size_t kMaxBatchLine = 64 * 1024;
constexpr std::size_t kMaxBatchLines = 100000;
constexpr std::size_t kMaxBatchInput = 32 * 1024 * 1024;

// Reads stdin into lines within the bounds; false with what is wrong in error_r.
bool read_batch(std::vector<std::string>& lines, std::string& error_r) {
    std::string line;
    std::size_t total = 0;
    char buf[65536];
    const auto too_many_lines = [&] {
        error_r = "line " + std::to_string(lines.size() + 1) + ": more than " + std::to_string(kMaxBatchLines) +
                  " lines (split the batch)";
        return false;
    };
    while (true) {
        const ssize_t got = ::read(STDIN_FILENO, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return error_r = std::string("cannot read standard input: ") + std::strerror(errno), false;
        if (got == 0) break;
        total += static_cast<std::size_t>(got);
        if (total > kMaxBatchInput)
            return error_r = "line " + std::to_string(lines.size() + 1) + ": input longer than " +
                             std::to_string(kMaxBatchInput) + " octets (split the batch)", false;
        for (ssize_t i = 0; i < got; ++i) {
            if (buf[i] == '\n') {
                if (lines.size() == kMaxBatchLines) return too_many_lines();
                lines.push_back(std::move(line));
                line.clear();
                continue;
            }
            if (line.size() == kMaxBatchLine)
                return error_r = "line " + std::to_string(lines.size() + 1) + ": longer than " +
                                 std::to_string(kMaxBatchLine) + " octets", false;
            line += buf[i];
        }
    }
    if (!line.empty()) {
        if (lines.size() == kMaxBatchLines) return too_many_lines();
        lines.push_back(std::move(line));
    }
    return true;
}

// One line as JSON.  A key given twice in one object is an error: which of
// the two values counts would be the parser's choice, not the writer's.
std::optional<json> parse_batch_line(const std::string& line, std::string& error_r) {
    std::vector<std::vector<std::string>> keys;  // per open object
    std::string duplicate;
    const json::parser_callback_t seen = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
        if (event == json::parse_event_t::key && !keys.empty()) {
            const std::string name = parsed.get<std::string>();
            auto& mine = keys.back();
            if (std::find(mine.begin(), mine.end(), name) != mine.end() && duplicate.empty()) duplicate = name;
            mine.push_back(name);
        }
        return true;
    };
    json j = json::parse(line, seen, false);
    if (j.is_discarded()) return error_r = "not valid JSON", std::nullopt;
    if (!duplicate.empty()) return error_r = "key \"" + duplicate + "\" given twice", std::nullopt;
    return j;
}

}  // namespace

int cmd_batch(const Options& o) {
    std::vector<std::string> lines;
    if (std::string why; !read_batch(lines, why))
        return finish({Exit::bad_input, why + " (nothing applied)"});
    int applied = 0;
    return change(o, [&](Session& s) -> Outcome {
        for (std::size_t n = 0; n < lines.size(); ++n) {
            if (lines[n].find_first_not_of(" \t\r") == std::string::npos) continue;
            std::string error;
            const auto j = parse_batch_line(lines[n], error);
            Outcome r = j ? batch_line(s, *j) : Outcome{Exit::bad_input, error};
            if (!r.ok())
                return {r.code, "line " + std::to_string(n + 1) + ": " + r.message + " (nothing applied)"};
            ++applied;
        }
        return {Exit::ok, "applied " + std::to_string(applied) + " change(s) in one transaction"};
    });
}

}  // namespace mailsuspend::cli
