// mailsuspend doctor (doctor.hpp).  Each check is one function returning a
// Check; what the servers run is read from their own tools (doveconf, exim4
// -bP/-bV/-bt/-bs, systemctl), never guessed from file names.
#include "doctor.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>

#include "config.hpp"
#include "config_snapshot.hpp"
#include "doctor_checks.hpp"
#include "doctor_process.hpp"
#include "mailsuspend/mailsuspend.h"
#include "operations.hpp"
#include "store.hpp"
#include "text.hpp"

using nlohmann::json;

namespace mailsuspend::cli {
namespace doctor {

std::string trim(std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    const auto e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& s, const char* seps) {
    std::vector<std::string> parts;
    std::size_t at = 0;
    while (at <= s.size()) {
        const auto end = s.find_first_of(seps, at);
        const std::string part = trim(s.substr(at, end == std::string::npos ? std::string::npos : end - at));
        if (!part.empty()) parts.push_back(part);
        if (end == std::string::npos) break;
        at = end + 1;
    }
    return parts;
}

std::vector<std::string> lines_of(const std::string& text) { return split(text, "\n"); }

std::string errno_text() { return std::strerror(errno); }

// Whether path can be opened with flags (and, read-only, one octet read); else why not in error_r.
bool try_open(const std::string& path, int flags, std::string& error_r) {
    // The mode for O_TMPFILE (a directory's write test that leaves nothing behind).
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) return error_r = path + ": " + errno_text(), false;
    char c;
    const bool ok = (flags & O_ACCMODE) != O_RDONLY || ::read(fd, &c, 1) >= 0;
    if (!ok) error_r = path + ": " + errno_text();
    ::close(fd);
    return ok;
}

// A group as Dovecot and Exim take it: a number as it is, else a name.
std::optional<gid_t> group_id(const std::string& group) {
    if (!group.empty() && group.find_first_not_of("0123456789") == std::string::npos)
        return static_cast<gid_t>(std::stoul(group));
    const struct group* g = ::getgrnam(group.c_str());
    return g ? std::optional<gid_t>(g->gr_gid) : std::nullopt;
}

std::optional<Identity> identity_of(const std::string& who, const std::string& user, const std::string& group,
                                    const std::vector<std::string>& extra, std::string& error_r) {
    Identity id;
    id.who = who;
    const passwd* pw = ::getpwnam(user.c_str());
    if (!pw) return error_r = who + " runs as user '" + user + "', which does not exist", std::nullopt;
    id.user = user;
    id.uid = pw->pw_uid;
    id.gid = pw->pw_gid;
    if (!group.empty()) {
        const auto gid = group_id(group);
        if (!gid) return error_r = who + " runs with group '" + group + "', which does not exist", std::nullopt;
        id.gid = *gid;
    }
    for (const auto& name : extra) {
        const auto gid = group_id(name);
        if (!gid) return error_r = who + " is given group '" + name + "', which does not exist", std::nullopt;
        id.groups.push_back(*gid);
    }
    return id;
}

std::vector<Access> reader_files(const Config& cfg) {
    return {{cfg.path, O_RDONLY}, {cfg.store_path + "/store", O_RDONLY}};
}

std::vector<Access> writer_files(const Config& cfg) {
    auto files = reader_files(cfg);
    // write_group (Exim) counts messages and records automatic suspensions.
    for (const char* name : {"lock", "journal", "counters"})
        files.push_back({cfg.store_path + "/" + name, O_RDWR});
    if (cfg.fleet.enabled && cfg.fleet.counters == FleetConfig::Counters::fleet)  // the keys it counted
        files.push_back({cfg.store_path + "/count-log", O_RDWR});
    // the notify file, written after each change (live Dovecot sessions wait on it)
    files.push_back({cfg.store_path + "/changed", O_WRONLY});
    if (!cfg.audit_log.empty()) files.push_back({cfg.audit_log, O_WRONLY | O_APPEND});
    return files;
}

// Opens every file as id; false with the first failure in error_r.
bool all_open(const Identity& id, const std::vector<Access>& files, std::string& error_r) {
    return run_as(id, [&](std::string& denied_r) {
        for (const auto& f : files)
            if (!try_open(f.path, f.flags, denied_r)) return false;
        return true;
    }, error_r);
}

Check access_check(const std::string& name, const std::optional<Identity>& id, const std::string& id_error,
                   const std::vector<Access>& files, const std::string& fix) {
    if (!id) return fail(name, id_error, "correct the server's config (see the problem)");
    if (std::string denied; !all_open(*id, files, denied))
        return fail(name, id->who + " (" + id->describe() + ") cannot open " + denied, fix);
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f.path;
    return pass(name, id->who + " (" + id->describe() + ") can open " + list);
}

}  // namespace doctor

namespace {

using namespace doctor;

// ------------------------------------------------ config, store, timers

// The snapshot fresh mail processes read (config_snapshot.hpp), kept here
// as every command keeps it; one that cannot be kept is no failure (an
// @include is allowed), only a parse in each of them.
std::string snapshot_state(const std::string& path, const Config& parsed) {
    std::string why;
    const std::string where = config_snapshot_path(path, MAILSUSPEND_SNAPSHOT_DIR);
    switch (keep_config_snapshot(path, MAILSUSPEND_SNAPSHOT_DIR, &parsed, why)) {
    case SnapshotState::current: return "its snapshot " + where + " is current";
    case SnapshotState::written: return "its snapshot " + where + " is written";
    case SnapshotState::not_kept: break;
    }
    return "no snapshot (" + why + "): each fresh Exim process parses the file";
}

Check check_config(const Options& o, std::optional<Config>& cfg) {
    std::string error;
    cfg = load_config(o.config, error);
    if (!cfg)
        return fail("config", error,
                    error.find("cannot read the file") != std::string::npos
                        ? "install the shipped mailsuspend.conf (conf/mailsuspend.conf) as " + o.config +
                              ", or name yours with --config"
                        : "correct " + o.config + " at the line named (README.md, Configuration)");
    return pass("config", o.config + " parses; " + snapshot_state(o.config, *cfg));
}

Check check_store(const std::optional<Config>& cfg) {
    const char* name = "store";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    std::string error;
    auto w = StoreWriter::open(*cfg, false, error);
    if (!w) return fail(name, error, "`mailsuspend init` creates the store (as root)");
    std::vector<std::string> report;
    if (!w->check(report)) {
        std::string all;
        for (const auto& line : report) all += (all.empty() ? "" : "; ") + line;
        return fail(name, "the store at " + cfg->store_path + " is inconsistent: " + all,
                    "`mailsuspend rebuild` rewrites it from its records");
    }
    const StoreStats s = w->stats();
    return pass(name, "store at " + cfg->store_path + " is consistent: generation " + std::to_string(s.generation) +
                          ", " + std::to_string(s.used_slots) + " records");
}

// systemctl when it answers; else the .wants symlink `systemctl enable` makes.
Check unit_enabled(const Options& d, const std::string& name, const std::string& unit, const std::string& target,
                   const std::string& why) {
    std::vector<std::string> argv{"systemctl"};
    if (d.unit_root != "/") argv.push_back("--root=" + d.unit_root);
    argv.insert(argv.end(), {"is-enabled", unit});
    const RunResult r = run_program(argv);
    const std::string state = trim(r.out);
    if (state == "enabled" || state == "static" || state == "alias") return pass(name, "systemctl: " + state);
    const std::string root = d.unit_root == "/" ? "" : d.unit_root;
    const std::string link = root + "/etc/systemd/system/" + target + ".wants/" + unit;
    struct stat st;
    if (::lstat(link.c_str(), &st) == 0) return pass(name, link + " exists");
    return fail(name, unit + " is not enabled (systemctl: " + (state.empty() ? r.what() : state) + "; no " + link +
                          "): " + why,
                "systemctl enable --now " + unit);
}

// ------------------------------------------------------------ the probe

// Suspends (or lifts) every service of the probe address, as actor "doctor".
bool set_probe(const Config& cfg, bool suspend, std::string& error_r) {
    auto w = StoreWriter::open(cfg, false, error_r);
    if (!w) return false;
    Session s(cfg, *w, Actor{0, "doctor"}, static_cast<int64_t>(std::time(nullptr)));
    Outcome o;
    if (suspend) {
        SuspendArgs a;
        a.target = cfg.probe_address;
        a.services = kAllServicesMask;
        a.reason = "mailsuspend doctor probe";
        a.duration = 600;  // lifts itself should doctor be killed mid-probe
        a.mode = DeliveryMode::queue;
        o = s.suspend(a);
    } else {
        UnsuspendArgs a;
        a.target = cfg.probe_address;
        a.admin = true;
        o = s.unsuspend(a);
    }
    std::vector<std::string> warnings;
    if (o.ok()) o = s.commit(warnings);
    if (!o.ok()) error_r = o.message;
    return o.ok();
}

Check probe_exim_receive(const Exim& e, const Config& cfg) {
    const char* name = "probe_exim_receive";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (!e.heavy) return pass(name, "not proven with light: receive modes apply after DATA, -bt cannot show them");
    const RunResult r = e.run({"-bt", cfg.probe_address});
    const std::string all = r.out + r.err;
    // The receive router defers a queue-mode recipient (exit status 1: not deliverable now).
    if (all.find("mailsuspend") != std::string::npos && all.find("cannot be resolved at this time") != std::string::npos)
        return pass(name, "exim4 -bt " + cfg.probe_address + ": held by the mailsuspend receive router (" +
                              trim(lines_of(all).back()) + ")");
    return fail(name, "exim4 -bt " + cfg.probe_address + " while it is suspended (queue mode) is not held by "
                      "mailsuspend: " + trim(all.substr(0, 400)),
                "see exim_routers above; the routers must call " + cfg.path);
}

Check probe_exim_send(const Exim& e, const Config& cfg) {
    const char* name = "probe_exim_send";
    if (!e.error.empty()) return exim_unusable(name, e);
    if (!e.heavy) return pass(name, "not proven with light: sends are refused after DATA");
    // A local SMTP session (as sendmail-like tools talk): its envelope sender is checked at MAIL FROM.
    const std::string dialogue = "EHLO doctor.invalid\r\nMAIL FROM:<" + cfg.probe_address + ">\r\nQUIT\r\n";
    const RunResult r = e.run({"-bs"}, dialogue);
    for (const auto& line : lines_of(r.out))
        if (line.rfind("550", 0) == 0 && line.find("5.7.13") != std::string::npos)
            return pass(name, "exim4 -bs: MAIL FROM:<" + cfg.probe_address + "> refused: " + line);
    return fail(name, "exim4 -bs: MAIL FROM:<" + cfg.probe_address + "> of a send-suspended sender was not "
                      "refused with 550 5.7.13: " + trim(r.out.substr(0, 400)),
                "see exim_wiring above; the MAIL ACL must call " + cfg.path);
}

Check probe_dovecot_login(const Dovecot& dc, const Config& cfg) {
    const char* name = "probe_dovecot_login";
    std::string error;
    const auto id = dovecot_auth_identity(dc, error);
    if (!id) return fail(name, error, "correct Dovecot's config");
    const auto denied = [&](std::string& failed_r) {
        const char* open_error = nullptr;
        mailsuspend_handle* ms = mailsuspend_open(cfg.path.c_str(), nullptr, nullptr, &open_error);
        if (!ms) return failed_r = "out of memory", false;
        mailsuspend_result r{};
        mailsuspend_check_login(ms, cfg.probe_address.c_str(), "imap", "127.0.0.1", &r);
        mailsuspend_close(&ms);
        if (r.fail_policy)
            return failed_r = std::string("the store could not be read (fail policy decided)") +
                              (open_error ? std::string(": ") + open_error : ""),
                   false;
        if (r.verdict != MAILSUSPEND_DENY) return failed_r = "the login was allowed", false;
        return true;
    };
    if (std::string failed; !run_as(*id, denied, failed))
        return fail(name, "the core's login check for " + cfg.probe_address + " as " + id->who + " (" +
                              id->describe() + "): " + failed,
                    "see dovecot_auth_access above");
    return pass(name, "proven: the login check the mailsuspend passdb makes, run as " + id->who + " (" +
                          id->describe() + "), denies " + cfg.probe_address +
                          ". Not proven: a real login through Dovecot's passdb chain (that needs an account's "
                          "password; the chain is checked in dovecot_passdb)");
}

std::vector<Check> run_probe(const Dovecot& dc, const Exim& e, const std::optional<Config>& cfg, bool store_ok) {
    const char* name = "probe";
    if (!cfg || !store_ok) return {fail(name, "not run: the config or the store is not usable", "fix those first")};
    if (std::string why; !set_probe(*cfg, true, why))
        return {fail(name, "cannot suspend the probe address " + cfg->probe_address + ": " + why,
                     "set doctor.probe_address to an address the store accepts")};
    std::vector<Check> checks{probe_exim_receive(e, *cfg), probe_exim_send(e, *cfg), probe_dovecot_login(dc, *cfg)};
    if (std::string why; !set_probe(*cfg, false, why))
        checks.push_back(fail(name, "cannot lift the probe suspension of " + cfg->probe_address + ": " + why,
                              "mailsuspend unsuspend " + cfg->probe_address + " --admin"));
    return checks;
}

void print_text(const std::vector<Check>& checks) {
    for (const auto& c : checks) {
        if (c.ok) {
            std::cout << "ok    " << c.name << ": " << c.detail << "\n";
        } else {
            std::cout << "FAIL  " << c.name << ": " << c.problem << "\n";
            std::cout << "      fix: " << c.fix << "\n";
        }
    }
}

void print_json(const std::vector<Check>& checks) {
    json all = json::array();
    for (const auto& c : checks)
        all.push_back({{"name", c.name}, {"ok", c.ok}, {"problem", c.problem}, {"fix", c.fix}, {"detail", c.detail}});
    std::cout << all.dump(1, ' ', false, json::error_handler_t::replace) << "\n";
}

}  // namespace

int cmd_doctor(const Options& o) {
    ::signal(SIGPIPE, SIG_IGN);  // a child that stops reading its stdin must not kill doctor
    if (::geteuid() != 0) {
        std::cerr << "mailsuspend: doctor must run as root (it checks the store as other users)\n";
        return static_cast<int>(Exit::failure);
    }
    std::vector<Check> checks;
    std::optional<Config> cfg;
    checks.push_back(check_config(o, cfg));
    checks.push_back(check_store(cfg));
    const bool store_ok = checks.back().ok;
    const Dovecot dc{o.dovecot_config};
    const Exim exim = read_exim(o);
    checks.push_back(check_dovecot_auth_access(dc, cfg));
    checks.push_back(check_dovecot_auth_live(dc, cfg));
    checks.push_back(check_dovecot_auth_logins(dc, cfg));
    checks.push_back(check_dovecot_mail_access(dc, cfg));
    checks.push_back(check_exim_access(exim, cfg));
    checks.push_back(check_dovecot_passdb(dc, cfg));
    checks.push_back(check_dovecot_plugins(dc, cfg));
    checks.push_back(check_exim_wiring(exim));
    checks.push_back(check_exim_routers(exim));
    checks.push_back(check_exim_build(exim));
    checks.push_back(check_exim_retry(exim, cfg));
    checks.push_back(check_exim_events(exim, cfg));
    checks.push_back(unit_enabled(o, "sweep_timer", "mailsuspend-sweep.timer", "timers.target",
                                  "expired suspensions are not lifted and pending AUP notices not sent"));
    checks.push_back(unit_enabled(o, "recover_unit", "mailsuspend-recover.service", "multi-user.target",
                                  "a change cut short by a crash is not replayed at boot before the servers start"));
    for (auto& c : run_probe(dc, exim, cfg, store_ok)) checks.push_back(std::move(c));
    if (o.json) print_json(checks);
    else print_text(checks);
    for (const auto& c : checks)
        if (!c.ok) return static_cast<int>(Exit::failure);
    return 0;
}

}  // namespace mailsuspend::cli
