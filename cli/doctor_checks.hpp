// The checks of `mailsuspend doctor` (doctor.hpp), shared by doctor.cpp (the
// command, config, store, timers, probe), doctor_dovecot.cpp and doctor_exim.cpp.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "config.hpp"
#include "doctor_process.hpp"

namespace mailsuspend::cli::doctor {

struct Check {
    std::string name;
    bool ok = true;
    std::string problem, fix;
    std::string detail;  // what was found or proven (also when ok)
};

inline Check pass(const std::string& name, const std::string& detail) { return {name, true, {}, {}, detail}; }
inline Check fail(const std::string& name, const std::string& problem, const std::string& fix) {
    return {name, false, problem, fix, {}};
}

std::string trim(std::string s);
std::vector<std::string> split(const std::string& s, const char* seps);
std::vector<std::string> lines_of(const std::string& text);
std::string errno_text();

// What each file must allow for a process that reads, or (Exim) also writes, the store.
struct Access {
    std::string path;
    int flags;
};

std::vector<Access> reader_files(const Config& cfg);
std::vector<Access> writer_files(const Config& cfg);
std::optional<Identity> identity_of(const std::string& who, const std::string& user, const std::string& group,
                                    const std::vector<std::string>& extra, std::string& error_r);
// Opens every file as id; false with the first failure in error_r.
bool all_open(const Identity& id, const std::vector<Access>& files, std::string& error_r);
// Passes when id can open files; else fails with fix.
Check access_check(const std::string& name, const std::optional<Identity>& id, const std::string& id_error,
                   const std::vector<Access>& files, const std::string& fix);

// ---- Dovecot (doctor_dovecot.cpp)

struct Dovecot {
    std::string config;  // -c FILE, or ""
    std::vector<std::string> base() const {
        std::vector<std::string> argv{"doveconf"};
        if (!config.empty()) argv.insert(argv.end(), {"-c", config});
        return argv;
    }
    // doveconf -h KEY (with -f FILTER); "$other_setting" values resolved.
    std::optional<std::string> value(const std::string& key, std::string& error_r,
                                     const std::string& filter = {}) const {
        auto argv = base();
        if (!filter.empty()) argv.insert(argv.end(), {"-f", filter});
        argv.insert(argv.end(), {"-h", key});
        const RunResult r = run_program(argv);
        if (!r.ok()) return error_r = "doveconf -h " + key + ": " + r.what(), std::nullopt;
        std::string v = trim(r.out);
        if (v.size() > 1 && v.front() == '$') return value(v.substr(1), error_r, filter);
        return v;
    }
    std::string fix_hint() const { return config.empty() ? "/etc/dovecot/conf.d/" : "the Dovecot config " + config; }
};

std::optional<Identity> dovecot_auth_identity(const Dovecot& dc, std::string& error_r);
Check check_dovecot_auth_access(const Dovecot& dc, const std::optional<Config>& cfg);
// The auth process can count limits.login_ips_per_day and hand its suspensions on.
Check check_dovecot_auth_logins(const Dovecot& dc, const std::optional<Config>& cfg);
Check check_dovecot_auth_live(const Dovecot& dc, const std::optional<Config>& cfg);
Check check_dovecot_mail_access(const Dovecot& dc, const std::optional<Config>& cfg);
Check check_dovecot_passdb(const Dovecot& dc, const std::optional<Config>& cfg);
Check check_dovecot_plugins(const Dovecot& dc, const std::optional<Config>& cfg);

// ---- Exim (doctor_exim.cpp)

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

Exim read_exim(const Options& o);
Check exim_unusable(const char* name, const Exim& e);
Check check_exim_wiring(const Exim& e);
Check check_exim_routers(const Exim& e);
Check check_exim_build(const Exim& e);
Check check_exim_retry(const Exim& e, const std::optional<Config>& cfg);
Check check_exim_events(const Exim& e, const std::optional<Config>& cfg);
Check check_exim_access(const Exim& e, const std::optional<Config>& cfg);

}  // namespace mailsuspend::cli::doctor
