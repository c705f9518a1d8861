// mailsuspend doctor (doctor.hpp).  Each check is one function returning a
// Check; what the servers run is read from their own tools (doveconf, exim4
// -bP/-bV/-bt/-bs, systemctl), never guessed from file names.
#include "doctor.hpp"

#include <dirent.h>
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
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "config.hpp"
#include "doctor_process.hpp"
#include "mailsuspend/mailsuspend.h"
#include "operations.hpp"
#include "store.hpp"
#include "text.hpp"

using nlohmann::json;

namespace mailsuspend::cli {
namespace {

struct Check {
    std::string name;
    bool ok = true;
    std::string problem, fix;
    std::string detail;  // what was found or proven (also when ok)
};

Check pass(const std::string& name, const std::string& detail) { return {name, true, {}, {}, detail}; }
Check fail(const std::string& name, const std::string& problem, const std::string& fix) {
    return {name, false, problem, fix, {}};
}

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

// "" when path can be opened with flags (and, read-only, one octet read); else why not.
std::string try_open(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return path + ": " + errno_text();
    char c;
    std::string why;
    if ((flags & O_ACCMODE) == O_RDONLY && ::read(fd, &c, 1) < 0) why = path + ": " + errno_text();
    ::close(fd);
    return why;
}

// /proc/PID/cmdline as its arguments (a process title counts as one).
std::vector<std::string> proc_cmdline(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
    return args;
}

// The numbers of one line of /proc/PID/status ("Uid:", "Groups:", "PPid:"); {0} for PPid when gone.
std::vector<int64_t> proc_status_ids(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::vector<int64_t> ids;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(key, 0) != 0) continue;
        std::istringstream words(line.substr(key.size()));
        for (int64_t id; words >> id;) ids.push_back(id);
        break;
    }
    if (ids.empty() && key == "PPid:") ids.push_back(0);
    return ids;
}

// ----------------------------------------------------------------- Dovecot

struct Dovecot {
    std::string config;  // -c FILE, or ""
    std::vector<std::string> base() const {
        std::vector<std::string> argv{"doveconf"};
        if (!config.empty()) argv.insert(argv.end(), {"-c", config});
        return argv;
    }
    // doveconf -h KEY (with -f FILTER); "$other_setting" values resolved.
    std::optional<std::string> value(const std::string& key, std::string& error,
                                     const std::string& filter = {}) const {
        auto argv = base();
        if (!filter.empty()) argv.insert(argv.end(), {"-f", filter});
        argv.insert(argv.end(), {"-h", key});
        const RunResult r = run_program(argv);
        if (!r.ok()) return error = "doveconf -h " + key + ": " + r.what(), std::nullopt;
        std::string v = trim(r.out);
        if (v.size() > 1 && v.front() == '$') return value(v.substr(1), error, filter);
        return v;
    }
    std::string fix_hint() const { return config.empty() ? "/etc/dovecot/conf.d/" : "the Dovecot config " + config; }
};

std::optional<Identity> identity_of(const std::string& who, const std::string& user, const std::string& group,
                                    const std::vector<std::string>& extra, std::string& error) {
    Identity id;
    id.who = who;
    const passwd* pw = ::getpwnam(user.c_str());
    if (!pw) return error = who + " runs as user '" + user + "', which does not exist", std::nullopt;
    id.user = user;
    id.uid = pw->pw_uid;
    id.gid = pw->pw_gid;
    if (!group.empty()) {
        const struct group* g = ::getgrnam(group.c_str());
        if (!g) return error = who + " runs with group '" + group + "', which does not exist", std::nullopt;
        id.gid = g->gr_gid;
    }
    for (const auto& name : extra) {
        const struct group* g = ::getgrnam(name.c_str());
        if (!g) return error = who + " is given group '" + name + "', which does not exist", std::nullopt;
        id.groups.push_back(g->gr_gid);
    }
    return id;
}

// What each file must allow for a process that reads, or (Exim) also writes, the store.
struct Access {
    std::string path;
    int flags;
};

std::vector<Access> reader_files(const Config& cfg) {
    return {{cfg.path, O_RDONLY}, {cfg.store_path + "/store", O_RDONLY}};
}

std::vector<Access> writer_files(const Config& cfg) {
    auto files = reader_files(cfg);
    // write_group (Exim) counts messages and records automatic suspensions.
    for (const char* name : {"lock", "journal", "counters"})
        files.push_back({cfg.store_path + "/" + name, O_RDWR});
    if (!cfg.audit_log.empty()) files.push_back({cfg.audit_log, O_WRONLY | O_APPEND});
    return files;
}

// Opens every file as id; the first failure, or "".
std::string first_denied(const Identity& id, const std::vector<Access>& files) {
    return run_as(id, [&] {
        for (const auto& f : files)
            if (std::string why = try_open(f.path, f.flags); !why.empty()) return why;
        return std::string();
    });
}

Check access_check(const std::string& name, const std::optional<Identity>& id, const std::string& id_error,
                   const std::vector<Access>& files, const std::string& fix) {
    if (!id) return fail(name, id_error, "correct the server's config (see the problem)");
    const std::string denied = first_denied(*id, files);
    if (!denied.empty())
        return fail(name, id->who + " (" + id->describe() + ") cannot open " + denied, fix);
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f.path;
    return pass(name, id->who + " (" + id->describe() + ") can open " + list);
}

std::vector<std::string> group_list(const std::string& value) { return split(value, ", "); }

std::optional<Identity> dovecot_auth_identity(const Dovecot& dc, std::string& error) {
    auto user = dc.value("service/auth/user", error);
    auto group = user ? dc.value("service/auth/group", error) : std::nullopt;
    auto extra = group ? dc.value("service/auth/extra_groups", error) : std::nullopt;
    if (!extra) return std::nullopt;
    return identity_of("Dovecot's auth process", *user, *group, group_list(*extra), error);
}

Check check_dovecot_auth_access(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_auth_access";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    std::string error;
    const auto id = dovecot_auth_identity(dc, error);
    return access_check(name, id, error, reader_files(*cfg),
                        "give the auth service the store's read group: `service auth { extra_groups = " +
                            cfg->read_group + " }` in " + dc.fix_hint() +
                            " (conf/dovecot/95-mailsuspend.conf has it), then `systemctl restart dovecot`; "
                            "the store itself must be readable by that group (`mailsuspend init` sets it)");
}

// Mail processes run as each user's uid (mail_uid when set); mailsuspend
// needs only mail_access_groups, so a user without groups of its own stands
// in for them: nobody, unless mail_uid/mail_gid are set.
Check check_dovecot_mail_access(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_mail_access";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    std::string error;
    auto uid = dc.value("mail_uid", error);
    auto gid = uid ? dc.value("mail_gid", error) : std::nullopt;
    auto groups = gid ? dc.value("mail_access_groups", error) : std::nullopt;
    std::optional<Identity> id;
    if (groups) {
        const std::string user = uid->empty() ? "nobody" : *uid;
        id = identity_of("Dovecot's mail processes", user, *gid, group_list(*groups), error);
        if (id && uid->empty()) id->who += " (each user's uid; tested as nobody with mail_access_groups)";
    }
    return access_check(name, id, error, {{cfg->store_path + "/store", O_RDONLY}, {cfg->path, O_RDONLY}},
                        "give the mail processes the store's read group: `mail_access_groups = " +
                            cfg->read_group + "` in " + dc.fix_hint() +
                            " (list groups already there too, e.g. mail," + cfg->read_group +
                            "), then `systemctl restart dovecot`");
}

// "auth" of a Dovecot process title "<instance_name>/auth [...]" ("dovecot/auth").
std::string process_role(const std::string& title) {
    const std::string head = title.substr(0, title.find(' '));
    const auto slash = head.rfind('/');
    return slash == std::string::npos ? "" : head.substr(slash + 1);
}

// The running auth processes of this Dovecot: "<instance>/auth" children of a
// master started with this config (-c FILE, or none for the default).
std::vector<pid_t> running_auth_processes(const Dovecot& dc) {
    std::vector<pid_t> found;
    DIR* proc = ::opendir("/proc");
    if (!proc) return found;
    while (const dirent* e = ::readdir(proc)) {
        const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0) continue;
        const auto args = proc_cmdline(pid);
        if (args.empty() || process_role(args[0]) != "auth") continue;
        const auto master = proc_cmdline(static_cast<pid_t>(proc_status_ids(pid, "PPid:").at(0)));
        if (master.empty() || master[0].size() < 7 || master[0].compare(master[0].size() - 7, 7, "dovecot") != 0)
            continue;
        const auto c = std::find(master.begin(), master.end(), "-c");
        const std::string config = c != master.end() && c + 1 != master.end() ? *(c + 1) : "";
        if (config == dc.config) found.push_back(pid);
    }
    ::closedir(proc);
    return found;
}

// Proves the store access of the auth process that runs now, with the ids the
// kernel shows for it: a config change Dovecot was not restarted for shows here.
Check check_dovecot_auth_live(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_auth_running";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    const auto pids = running_auth_processes(dc);
    if (pids.empty()) return pass(name, "no Dovecot auth process of this config runs now: nothing to check live");
    for (const pid_t pid : pids) {
        Identity id;
        id.who = "the running Dovecot auth process (pid " + std::to_string(pid) + ")";
        const auto uids = proc_status_ids(pid, "Uid:");
        const auto gids = proc_status_ids(pid, "Gid:");
        if (uids.size() < 2 || gids.size() < 2) continue;  // it exited meanwhile
        id.uid = static_cast<uid_t>(uids[1]);
        id.gid = static_cast<gid_t>(gids[1]);
        const passwd* pw = ::getpwuid(id.uid);
        id.user = pw ? pw->pw_name : std::to_string(id.uid);
        for (const int64_t g : proc_status_ids(pid, "Groups:")) id.groups.push_back(static_cast<gid_t>(g));
        if (const std::string denied = first_denied(id, reader_files(*cfg)); !denied.empty())
            return fail(name, id.who + " (" + id.describe() + ") cannot open " + denied,
                        "`systemctl restart dovecot` if the config already gives the auth service the group "
                        "(dovecot_auth_access passes); else see dovecot_auth_access");
    }
    return pass(name, std::to_string(pids.size()) + " running auth process(es) can read the store with their "
                                                     "current groups");
}

// One passdb { } block of doveconf -n, in order.
using Block = std::map<std::string, std::string>;

std::vector<Block> top_level_passdbs(const std::string& doveconf_n) {
    std::vector<Block> passdbs;
    int depth = 0;
    bool in_passdb = false;
    for (const auto& line : lines_of(doveconf_n)) {
        if (line.front() == '#') continue;
        if (line.back() == '{') {
            if (depth == 0 && line.rfind("passdb", 0) == 0) in_passdb = true, passdbs.emplace_back();
            ++depth;
        } else if (line == "}") {
            if (--depth == 0) in_passdb = false;
        } else if (in_passdb && depth == 1) {
            const auto eq = line.find('=');
            if (eq != std::string::npos) passdbs.back()[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
        }
    }
    return passdbs;
}

std::string describe_passdb(const Block& b) {
    std::string text = "passdb { driver = " + (b.count("driver") ? b.at("driver") : std::string("?"));
    if (b.count("args")) text += "; args = " + b.at("args");
    return text + " }";
}

Check check_dovecot_passdb(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_passdb";
    auto argv = dc.base();
    argv.push_back("-n");
    const RunResult r = run_program(argv);
    if (!r.ok())
        return fail(name, "doveconf cannot read Dovecot's config: " + r.what(),
                    "install dovecot-core and correct the config doveconf names");
    const auto passdbs = top_level_passdbs(r.out);
    std::size_t ms = 0;
    while (ms < passdbs.size() && (!passdbs[ms].count("driver") || passdbs[ms].at("driver") != "mailsuspend")) ++ms;
    if (ms == passdbs.size())
        return fail(name, "Dovecot has no `passdb { driver = mailsuspend }`: no login is ever denied",
                    "copy /usr/share/mailsuspend/dovecot/95-mailsuspend.conf (conf/dovecot/) into " +
                        dc.fix_hint() + ", then `systemctl restart dovecot`");
    const Block& m = passdbs[ms];
    if (!m.count("skip") || m.at("skip") != "unauthenticated")
        return fail(name, "the mailsuspend passdb lacks `skip = unauthenticated`: it would run before the "
                          "password is checked",
                    "add `skip = unauthenticated` to `passdb { driver = mailsuspend }` (as the shipped snippet has)");
    bool reached = false;
    for (std::size_t i = 0; i < ms; ++i) {
        const Block& b = passdbs[i];
        if ((b.count("deny") && b.at("deny") == "yes") || (b.count("master") && b.at("master") == "yes")) continue;
        const std::string success = b.count("result_success") ? b.at("result_success") : "return-ok";
        if (success == "continue-ok") {
            reached = true;
        } else if (success.rfind("return", 0) == 0) {
            return fail(name, describe_passdb(b) + " ends a successful login (result_success = " + success +
                                  (b.count("result_success") ? "" : ", the default") +
                                  ") before the mailsuspend passdb: suspended users log in",
                        "add `result_success = continue-ok` to that passdb in " + dc.fix_hint() +
                            ", then `systemctl restart dovecot`");
        }
    }
    if (!reached)
        return fail(name, "no passdb before the mailsuspend passdb authenticates with `result_success = "
                          "continue-ok`: the mailsuspend passdb (skip = unauthenticated) never runs",
                    "put the passdb that checks passwords first and add `result_success = continue-ok` to it");
    std::string detail = "the password passdb hands successful logins on (continue-ok) to the mailsuspend passdb";
    if (cfg && m.count("args") && m.at("args") != cfg->path)
        return fail(name, "the mailsuspend passdb reads " + m.at("args") + ", not " + cfg->path,
                    "set `args = " + cfg->path + "` in the mailsuspend passdb, or run doctor with --config " +
                        m.at("args"));
    return pass(name, detail);
}

Check check_dovecot_plugins(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_plugins";
    std::string error;
    for (const char* protocol : {"imap", "pop3"}) {
        const std::string plugin = std::string(protocol) + "_mailsuspend";
        auto plugins = dc.value("mail_plugins", error, std::string("protocol=") + protocol);
        if (!plugins) return fail(name, error, "correct Dovecot's config");
        const auto list = split(*plugins, " ");
        if (std::find(list.begin(), list.end(), plugin) == list.end())
            return fail(name, std::string("mail_plugins for protocol ") + protocol + " lacks " + plugin +
                                  ": live " + protocol + " sessions of suspended users are not ended",
                        "`protocol " + std::string(protocol) + " { mail_plugins = $mail_plugins " + plugin +
                            " }` in " + dc.fix_hint() + " (the shipped snippet has it)");
    }
    auto conf = dc.value("plugin/mailsuspend_config", error);
    if (!conf) return fail(name, error, "correct Dovecot's config");
    if (cfg && !conf->empty() && *conf != cfg->path)
        return fail(name, "the mail plugins read " + *conf + " (plugin { mailsuspend_config }), not " + cfg->path,
                    "set `mailsuspend_config = " + cfg->path + "` in plugin { }, or run doctor with --config " + *conf);
    return pass(name, "imap_mailsuspend and pop3_mailsuspend are in mail_plugins of imap and pop3");
}

// -------------------------------------------------------------------- Exim

struct Router {
    std::string name;
    std::map<std::string, std::string> options;
    std::string get(const std::string& k) const {
        auto it = options.find(k);
        return it == options.end() ? "" : it->second;
    }
};

struct Exim {
    std::string binary;  // /usr/sbin/exim4
    std::string config;  // -C FILE, or ""
    std::string error;   // exim4 unusable: every Exim check reports it
    bool heavy = false;
    std::map<std::string, std::string> main;
    std::vector<Router> routers;
    std::string full_config;  // exim4 -bP config

    std::vector<std::string> base() const {
        std::vector<std::string> argv{binary};
        if (!config.empty()) argv.insert(argv.end(), {"-C", config});
        return argv;
    }
    RunResult run(std::vector<std::string> args, const std::string& input = {}) const {
        auto argv = base();
        argv.insert(argv.end(), args.begin(), args.end());
        return run_program(argv, input);
    }
    std::string where() const { return config.empty() ? "Exim's config" : "the Exim config " + config; }
};

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

// The lines of each ACL in `exim4 -bP config`, by name.
std::map<std::string, std::vector<std::string>> acls_of(const std::string& config) {
    std::map<std::string, std::vector<std::string>> acls;
    static const std::regex acl_name(R"(^\s*([A-Za-z0-9_]+):\s*$)");
    bool in_acl = false;
    std::string current;
    std::istringstream in(config);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("begin ", 0) == 0) {
            in_acl = trim(line) == "begin acl";
            current.clear();
            continue;
        }
        std::smatch m;
        if (!in_acl || trim(line).rfind("#", 0) == 0) continue;
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
        if (can_reach_user(e.routers[i]))
            return fail(name, "router " + e.routers[i].name + " (driver " + e.routers[i].get("driver") +
                                  ") comes before " + e.routers[first].name +
                                  ": a suspended recipient's forwarder, filter, pipe, alias or mailbox "
                                  "is reached before mailsuspend decides",
                        fix);
    return pass(name, e.routers[*queued].name + " and " + e.routers[*receive].name +
                          " come before every router that can reach a user's forwarder, filter or mailbox");
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
    bool in_retry = false;
    std::istringstream in(config);
    for (std::string line; std::getline(in, line);) {
        const std::string t = trim(line);
        if (t.rfind("begin ", 0) == 0) {
            in_retry = t == "begin retry";
            continue;
        }
        if (!in_retry || t.empty() || t.front() == '#') continue;
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

std::optional<Identity> exim_identity(const Exim& e, std::string& error) {
    if (!e.error.empty()) return error = e.error, std::nullopt;
    const std::string user = e.main.count("exim_user") ? e.main.at("exim_user") : "";
    const std::string group = e.main.count("exim_group") ? e.main.at("exim_group") : "";
    // Exim drops every supplementary group (setgroups(0, NULL)); it never uses
    // initgroups for itself, so /etc/group membership does not count.
    return identity_of("Exim's processes", user, group, {}, error);
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

// ------------------------------------------------------------ the rest

Check check_config(const Options& o, std::optional<Config>& cfg) {
    std::string error;
    cfg = load_config(o.config, error);
    if (!cfg)
        return fail("config", error,
                    error.find("cannot read the file") != std::string::npos
                        ? "install the shipped mailsuspend.conf (conf/mailsuspend.conf) as " + o.config +
                              ", or name yours with --config"
                        : "correct " + o.config + " at the line named (README.md, Configuration)");
    return pass("config", o.config + " parses");
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
std::string set_probe(const Config& cfg, bool suspend) {
    std::string error;
    auto w = StoreWriter::open(cfg, false, error);
    if (!w) return error;
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
    return o.ok() ? "" : o.message;
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
    std::string verdict;
    const std::string failed = run_as(*id, [&] {
        const char* open_error = nullptr;
        mailsuspend_handle* ms = mailsuspend_open(cfg.path.c_str(), nullptr, nullptr, &open_error);
        if (!ms) return std::string("out of memory");
        mailsuspend_result r{};
        mailsuspend_check_login(ms, cfg.probe_address.c_str(), "imap", "127.0.0.1", &r);
        mailsuspend_close(&ms);
        if (r.fail_policy) return std::string("the store could not be read (fail policy decided)") +
                                  (open_error ? std::string(": ") + open_error : "");
        if (r.verdict != MAILSUSPEND_DENY) return std::string("the login was allowed");
        return std::string();
    });
    if (!failed.empty())
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
    if (std::string why = set_probe(*cfg, true); !why.empty())
        return {fail(name, "cannot suspend the probe address " + cfg->probe_address + ": " + why,
                     "set doctor.probe_address to an address the store accepts")};
    std::vector<Check> checks{probe_exim_receive(e, *cfg), probe_exim_send(e, *cfg), probe_dovecot_login(dc, *cfg)};
    if (std::string why = set_probe(*cfg, false); !why.empty())
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
    checks.push_back(check_dovecot_mail_access(dc, cfg));
    checks.push_back(check_exim_access(exim, cfg));
    checks.push_back(check_dovecot_passdb(dc, cfg));
    checks.push_back(check_dovecot_plugins(dc, cfg));
    checks.push_back(check_exim_wiring(exim));
    checks.push_back(check_exim_routers(exim));
    checks.push_back(check_exim_build(exim));
    checks.push_back(check_exim_retry(exim, cfg));
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
