// mailsuspend: the admin and control-panel command.  This file is the
// command line (CLI11); the commands are in commands.cpp, the rules in the core.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <streambuf>
#include <string>
#include <utility>

#include "commands.hpp"
#include "doctor.hpp"
#include "fleet_sync.hpp"
#include "notify.hpp"
#include "operations.hpp"
#include "text.hpp"

using namespace mailsuspend;
using namespace mailsuspend::cli;

namespace {

// Everything written to stderr goes through escape_for_display, line by
// line: an error message that quotes input (an option value, a batch line,
// a JSON parser's token) can never put ESC, NUL, a right-to-left override or
// any other control character on the admin's terminal (issue 12, item 10).
class EscapingBuf : public std::streambuf {
public:
    explicit EscapingBuf(std::streambuf* dest) : dest_(dest) {}

protected:
    int overflow(int c) override {
        if (c == traits_type::eof()) return sync() == 0 ? 0 : traits_type::eof();
        if (c == '\n') {
            line_ += escape_for_display(pending_, kMaxLine);
            line_ += '\n';
            pending_.clear();
            return flush_line() ? c : traits_type::eof();
        }
        pending_ += static_cast<char>(c);
        return c;
    }
    int sync() override {
        line_ += escape_for_display(pending_, kMaxLine);
        pending_.clear();
        return flush_line() && dest_->pubsync() == 0 ? 0 : -1;
    }

private:
    static constexpr std::size_t kMaxLine = 4000;
    bool flush_line() {
        const auto n = static_cast<std::streamsize>(line_.size());
        const bool ok = dest_->sputn(line_.data(), n) == n;
        line_.clear();
        return ok;
    }
    std::streambuf* dest_;
    std::string pending_, line_;
};

}  // namespace

int main(int argc, char** argv) {
    std::streambuf* const original = std::cerr.rdbuf();
    EscapingBuf escaping(original);
    std::cerr.rdbuf(&escaping);
    struct Restore {
        std::streambuf* buf;
        ~Restore() {
            std::cerr.flush();
            std::cerr.rdbuf(buf);
        }
    } restore{original};
    Options o;
    CLI::App app{"mailsuspend: suspend mail accounts per service (Dovecot and Exim)"};
    app.set_help_all_flag("--help-all");
    app.require_subcommand(1);
    app.add_option("--config", o.config, "config file")->capture_default_str();
    app.add_option("--actor", o.actor, "who acts, recorded in the audit log (e.g. a panel user)");

    auto target = [&](CLI::App* c, const char* what) { c->add_option("target", o.target, what)->required(); };
    auto* init = app.add_subcommand("init", "create the store (idempotent)");
    auto* suspend = app.add_subcommand("suspend", "suspend services of a mailbox or domain");
    target(suspend, "user@example.com or @example.com");
    suspend->add_option("--service", o.services, "services: imap,pop3,webmail,send,webmail_send,receive,sieve or all")->required();
    suspend->add_option("--reason", o.reason, "reason shown to the user and the log");
    auto* for_option = suspend->add_option("--for", o.duration, "lift automatically after (90s, 30m, 24h, 90d, 4d8h)");
    suspend->add_flag("--lock", o.lock, "only root with --admin may lift it");
    suspend->add_option("--mode", o.mode, "mail for it while receive is suspended: deliver, discard, reject, queue");
    suspend->add_flag("--fail-queued", o.fail_queued, "with send: fail its mail already queued");
    suspend->add_flag("--hold", o.hold, "with send: accept its mail and hold it in the queue (held, release)");
    auto* unsuspend = app.add_subcommand("unsuspend", "lift suspensions");
    target(unsuspend, "user@example.com or @example.com");
    unsuspend->add_option("--service", o.services, "services to lift (default: all)");
    unsuspend->add_flag("--admin", o.admin, "as root: lift a locked suspension too");
    unsuspend->add_flag("--self-service", o.self_service, "the end user's own unblock (once per interval)");
    auto* status = app.add_subcommand("status", "effective state of a mailbox or domain");
    target(status, "user@example.com or @example.com");
    status->add_flag("--json", o.json, "one JSON object");
    auto* list = app.add_subcommand("list", "suspended targets");
    list->add_option("--service", o.services, "only those with this service suspended");
    list->add_flag("--json", o.json, "a JSON array");
    auto* set_mode = app.add_subcommand("set-mode", "delivery mode for mail while receive is suspended");
    target(set_mode, "user@example.com or @example.com");
    set_mode->add_option("mode", o.mode, "deliver, discard, reject or queue")->required();
    auto* held = app.add_subcommand("held", "mail held in Exim's queue for a mailbox or domain (suspend --hold)");
    target(held, "user@example.com or @example.com");
    held->add_flag("--json", o.json, "a JSON array");
    auto* release = app.add_subcommand("release", "lift a hold and deliver the held mail at once (or --delete it)");
    target(release, "user@example.com or @example.com");
    release->add_flag("--delete", o.delete_held, "remove the held mail instead (audited with the count)");
    release->add_flag("--admin", o.admin, "as root: lift a locked hold too");
    auto* can_delete = app.add_subcommand("can-delete", "exit 0 if the mailbox may be deleted, 3 while suspended");
    target(can_delete, "user@example.com");
    auto* sweep = app.add_subcommand("sweep", "lift expired suspensions and record them in the audit log");
    auto* check = app.add_subcommand("check", "verify the store");
    auto* rebuild = app.add_subcommand("rebuild", "rewrite the store as a new generation");
    rebuild->add_option("--capacity", o.capacity, "targets to size it for (default: current)");
    auto* batch = app.add_subcommand("batch", "apply JSON lines from stdin in one transaction");
    auto* report_spam = app.add_subcommand("report-spam", "record a spam report (over spam.threshold: send suspended)");
    report_spam->add_option("target", o.target, "the mailbox reported (not with --arf)");
    report_spam->add_option("--evidence", o.evidence, "a sample message file (repeatable)");
    report_spam->add_flag("--arf", o.arf, "read an ARF report (RFC 5965) on stdin and attribute it");
    report_spam->add_flag("--token-only", o.token_only, "with --arf: only a valid X-Mailsuspend-Token attributes");
    auto* send_notices_cmd = app.add_subcommand("send-notices", "send pending AUP notices (sweep does this too)");
    auto* token = app.add_subcommand("token", "print the X-Mailsuspend-Token value for an account");
    token->add_option("target", o.target, "an account, or a token with --open")->required();
    token->add_flag("--open", o.open, "verify a token and print its account");
    auto* usage = app.add_subcommand("usage", "rate counters of a mailbox or domain against their limits, and when they fall back");
    target(usage, "user@example.com");
    usage->add_option("--ip", o.ip, "also the per-hour count of this client IP");
    usage->add_flag("--json", o.json, "one JSON object");
    auto* reset_usage = app.add_subcommand("reset-usage", "clear the rate counters of a mailbox or domain (audited)");
    target(reset_usage, "user@example.com");
    reset_usage->add_option("--ip", o.ip, "also clear the per-hour count of this client IP");

    auto* metrics = app.add_subcommand("metrics", "counters and store gauges in the Prometheus text format");
    auto* textfile = metrics->add_option("--textfile", o.textfile_dir,
                                         "write DIR/mailsuspend.prom atomically (node_exporter's textfile collector)")
                         ->expected(0, 1)
                         ->capture_default_str();
    auto* doctor = app.add_subcommand("doctor", "check the installation; each problem with its fix (exit 1)");
    doctor->add_flag("--json", o.json, "a JSON array of checks: name, ok, problem, fix, detail");
    doctor->add_option("--dovecot-config", o.dovecot_config, "Dovecot config (doveconf -c FILE)");
    doctor->add_option("--exim-config", o.exim_config, "Exim config (exim4 -C FILE)");
    doctor->add_option("--exim-binary", o.exim_binary, "the exim4 binary to ask")->capture_default_str();
    doctor->add_option("--unit-root", o.unit_root,
                       "root directory where systemd unit enablement is looked up (systemctl --root)")
        ->capture_default_str();

    auto* sync = app.add_subcommand("sync", "the fleet agent: publish this node's changes, apply the others' (foreground)");
    auto* fleet_status = app.add_subcommand("fleet-status", "this node's place in the fleet: position, lag, nodes seen");
    fleet_status->add_flag("--json", o.json, "one JSON object");
    auto* notify = app.add_subcommand("notify", "the alerts agent: POST every audit line to the webhook, mail the admin (foreground)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(Exit::bad_input);
    }
    o.duration_given = for_option->count() > 0;
    o.textfile = textfile->count() > 0;
    if (o.textfile && o.textfile_dir.empty()) o.textfile_dir = Options{}.textfile_dir;
    const std::pair<CLI::App*, int (*)(const Options&)> commands[] = {
        {init, cmd_init},       {suspend, cmd_suspend},   {unsuspend, cmd_unsuspend},
        {status, cmd_status},   {list, cmd_list},         {set_mode, cmd_set_mode},
        {can_delete, cmd_can_delete}, {sweep, cmd_sweep}, {check, cmd_check},
        {rebuild, cmd_rebuild}, {batch, cmd_batch},     {report_spam, cmd_report_spam},
        {send_notices_cmd, cmd_send_notices}, {token, cmd_token},
        {usage, cmd_usage},     {reset_usage, cmd_reset_usage},
        {metrics, cmd_metrics}, {doctor, cmd_doctor},
        {sync, cmd_sync},       {fleet_status, cmd_fleet_status}, {notify, cmd_notify},
        {held, cmd_held},       {release, cmd_release}};
    try {
        for (const auto& [sub, run] : commands)
            if (sub->parsed()) return run(o);
    } catch (const std::exception& e) {
        std::cerr << "mailsuspend: " << e.what() << "\n";
        return static_cast<int>(Exit::failure);
    }
    return static_cast<int>(Exit::bad_input);
}
