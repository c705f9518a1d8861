// The mailsuspend commands, apart from their command line (main.cpp): each
// takes the parsed options, reads stdin where it says so, prints, and returns
// the exit code (Exit in operations.hpp).  fuzz_batch runs cmd_batch directly.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mailsuspend/mailsuspend.h"

namespace mailsuspend {
struct Config;
struct Outcome;
class Session;
}  // namespace mailsuspend

namespace mailsuspend::cli {

// In the store directory: mail_access_groups by number for Dovecot, written by
// `mailsuspend init` and included by conf/dovecot/95-mailsuspend.conf.
inline constexpr const char* kDovecotGroupsFile = "dovecot-groups.conf";

struct Options {
    std::string config = MAILSUSPEND_DEFAULT_CONFIG;
    std::string actor;
    bool json = false;
    std::string target;
    std::string services;
    std::string reason;
    std::string duration;
    bool duration_given = false;  // --for "" is an error, not "forever"
    std::string mode;
    bool lock = false, fail_queued = false, hold = false, admin = false, self_service = false;
    bool delete_held = false;  // release --delete
    uint64_t capacity = 0;
    std::vector<std::string> evidence;
    bool arf = false, token_only = false, open = false;
    std::string ip;  // usage, reset-usage: a client IP's counter too
    bool textfile = false;  // metrics --textfile [DIR]
    std::string textfile_dir = "/var/lib/prometheus/node-exporter";
    // doctor: the servers' configs ("" = their defaults) and where unit enablement is looked up
    std::string dovecot_config, exim_config, unit_root = "/";
    std::string exim_binary = "/usr/sbin/exim4";  // doctor: the Exim to ask
};

int cmd_init(const Options& o);
int cmd_suspend(const Options& o);
int cmd_unsuspend(const Options& o);
int cmd_status(const Options& o);
int cmd_list(const Options& o);
int cmd_set_mode(const Options& o);
int cmd_can_delete(const Options& o);
int cmd_sweep(const Options& o);
int cmd_check(const Options& o);
int cmd_rebuild(const Options& o);
int cmd_batch(const Options& o);
int cmd_report_spam(const Options& o);
int cmd_send_notices(const Options& o);
int cmd_token(const Options& o);
int cmd_usage(const Options& o);
int cmd_reset_usage(const Options& o);
int cmd_metrics(const Options& o);
int cmd_held(const Options& o);
int cmd_release(const Options& o);

// For the command files: the exit code of an outcome (its line printed); the
// current time; the config or an exit code; changes in one committed
// session; the effective state of o.target as `status --json` shows it
// (key: the normalised target), or nullopt with code set.
int finish(const Outcome& o);
int64_t now();
std::optional<Config> config_or_exit(const Options& o, int& code);
int change(const Options& o, const std::function<Outcome(Session&)>& body);
std::optional<nlohmann::json> effective_status(const Options& o, std::string& key, int& code);

}  // namespace mailsuspend::cli
