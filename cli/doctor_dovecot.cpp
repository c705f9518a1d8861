// mailsuspend doctor: Dovecot's side, read with doveconf (doctor_checks.hpp).
#include <dirent.h>
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

namespace mailsuspend::cli::doctor {

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

std::vector<std::string> group_list(const std::string& value) { return split(value, ", "); }

std::optional<Identity> dovecot_auth_identity(const Dovecot& dc, std::string& error_r) {
    auto user = dc.value("service/auth/user", error_r);
    auto group = user ? dc.value("service/auth/group", error_r) : std::nullopt;
    auto extra = group ? dc.value("service/auth/extra_groups", error_r) : std::nullopt;
    if (!extra) return std::nullopt;
    return identity_of("Dovecot's auth process", *user, *group, group_list(*extra), error_r);
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

// limits.login_ips_per_day: the auth process writes the login tables and
// adds entries to the outbox (O_TMPFILE: a write test that leaves nothing).
Check check_dovecot_auth_logins(const Dovecot& dc, const std::optional<Config>& cfg) {
    const char* name = "dovecot_auth_logins";
    if (!cfg) return fail(name, "not checked: the config does not parse", "fix the config first");
    std::string error;
    const auto id = dovecot_auth_identity(dc, error);
    Check c = access_check(name, id, error,
                           {{cfg->store_path + "/logins", O_RDWR},
                            {cfg->store_path + "/login-counters", O_RDWR},
                            {cfg->store_path + "/outbox", O_TMPFILE | O_WRONLY}},
                           "run `mailsuspend init` (it gives <store>/logins and <store>/login-counters to "
                           "store.login_group = " + cfg->login_group + " and lets that group add to the "
                           "outbox); store.login_group must be the auth service's group (`service auth { group }`, "
                           "Debian: dovecot)");
    if (!c.ok && cfg->limits.login_ips_per_day == 0)
        return pass(name, "limits.login_ips_per_day is off; to turn it on first fix: " + c.problem);
    return c;
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
    // changed: the notify file a live session watches (inotify needs read access)
    return access_check(name, id, error,
                        {{cfg->store_path + "/store", O_RDONLY}, {cfg->path, O_RDONLY},
                         {cfg->store_path + "/changed", O_RDONLY}},
                        "give the mail processes the store's read group: `mail_access_groups = " +
                            cfg->read_group + "` in " + dc.fix_hint() +
                            " (list groups already there too, e.g. mail," + cfg->read_group +
                            "), then `systemctl restart dovecot`; if it names a number from " + cfg->store_path +
                            "/dovecot-groups.conf, `mailsuspend init` writes the group's current one");
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
        if (std::string denied; !all_open(id, reader_files(*cfg), denied))
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

// Whether Dovecot logs the mailsuspend passdb's denials: Info lines of the
// passdb's event, which Dovecot drops unless auth_verbose is on for it (its
// own setting, else the global one).
bool denials_logged(const Dovecot& dc, const Block& passdb) {
    const std::string own = passdb.count("auth_verbose") ? passdb.at("auth_verbose") : "default";
    if (own != "default") return own == "yes";
    std::string error;
    const auto global = dc.value("auth_verbose", error);
    return global && *global == "yes";
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
    if (!denials_logged(dc, m))
        return fail(name, "the mailsuspend passdb's login denials are not logged: Dovecot drops a passdb's "
                          "Info lines unless auth_verbose is on for it",
                    "add `auth_verbose = yes` to `passdb { driver = mailsuspend }` (as the shipped snippet has)");
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

}  // namespace mailsuspend::cli::doctor
