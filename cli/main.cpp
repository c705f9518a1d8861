// mailsuspend: the admin and control-panel command.  It parses, calls the
// core (common/), and prints; every rule lives in the core.
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>

#include "config.hpp"
#include "counters.hpp"
#include "mailsuspend/mailsuspend.h"
#include "operations.hpp"
#include "store.hpp"
#include "text.hpp"

using namespace mailsuspend;
using nlohmann::json;

namespace {

struct Options {
    std::string config = MAILSUSPEND_DEFAULT_CONFIG;
    std::string actor;
    bool json = false;
    std::string target;
    std::string services;
    std::string reason;
    std::string duration;
    std::string mode;
    bool lock = false, fail_queued = false, admin = false, self_service = false;
    uint64_t capacity = 0;
};

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
    return cfg;
}

int with_writer(const Options& o, bool init, const std::function<int(const Config&, StoreWriter&)>& fn) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string error;
    auto writer = StoreWriter::open(*cfg, init, error);
    if (!writer) {
        std::cerr << "mailsuspend: " << error << "\n";
        return static_cast<int>(Exit::failure);
    }
    return fn(*cfg, *writer);
}

// Runs one or more changes in one session and commits them.
int change(const Options& o, const std::function<Outcome(Session&)>& body) {
    if (const std::string why = check_free_text(o.actor, 64); !why.empty())
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

std::optional<SuspendArgs> suspend_args(const Options& o, Outcome& error) {
    SuspendArgs a;
    a.target = o.target;
    std::string why;
    auto mask = parse_service_list(o.services, why);
    if (!mask) return error = {Exit::bad_input, "--service: " + why}, std::nullopt;
    a.services = *mask;
    a.reason = o.reason;
    if (!o.duration.empty()) {
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
    return a;
}

int cmd_suspend(const Options& o) {
    Outcome error;
    auto args = suspend_args(o, error);
    if (!args) return finish(error);
    return change(o, [&](Session& s) { return s.suspend(*args); });
}

std::optional<UnsuspendArgs> unsuspend_args(const Options& o, Outcome& error) {
    UnsuspendArgs a;
    a.target = o.target;
    if (!o.services.empty()) {
        std::string why;
        auto mask = parse_service_list(o.services, why);
        if (!mask) return error = {Exit::bad_input, "--service: " + why}, std::nullopt;
        a.services = *mask;
    }
    a.admin = o.admin;
    a.self_service = o.self_service;
    return a;
}

int cmd_unsuspend(const Options& o) {
    Outcome error;
    auto args = unsuspend_args(o, error);
    if (!args) return finish(error);
    return change(o, [&](Session& s) { return s.unsuspend(*args); });
}

int cmd_set_mode(const Options& o) {
    auto mode = parse_mode(o.mode);
    if (!mode) return finish({Exit::bad_input, "mode must be deliver, discard, reject or queue"});
    return change(o, [&](Session& s) { return s.set_mode(o.target, *mode); });
}

int cmd_sweep(const Options& o) {
    return change(o, [&](Session& s) {
        int lifted = 0;
        return s.sweep(lifted);
    });
}

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
        if (!s["reason"].get<std::string>().empty()) std::cout << ": " << s["reason"].get<std::string>();
        std::cout << "\n";
    }
}

int cmd_status(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string key;
    if (Outcome n = normalise_target(*cfg, o.target, key); !n.ok()) return finish(n);
    auto reader = open_reader(*cfg);
    if (!reader) return static_cast<int>(Exit::failure);
    TargetRecord mailbox, domain;
    const bool is_domain = key.front() == '@';
    const LookupStatus m = is_domain ? LookupStatus::absent : reader->read(key, mailbox);
    const LookupStatus d = reader->read(is_domain ? key : std::string(domain_key_of(key)), domain);
    if (m == LookupStatus::unavailable || d == LookupStatus::unavailable)
        return finish({Exit::failure, "store unavailable: " + reader->last_error()});
    const json j = status_json(*cfg, key, m == LookupStatus::found ? &mailbox : nullptr,
                               d == LookupStatus::found ? &domain : nullptr, now());
    if (o.json) std::cout << j.dump() << "\n";
    else print_status(j);
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
    if (o.json) std::cout << all.dump() << "\n";
    return 0;
}

int cmd_can_delete(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string key;
    if (Outcome n = normalise_target(*cfg, o.target, key); !n.ok()) return finish(n);
    auto reader = open_reader(*cfg);
    if (!reader) return static_cast<int>(Exit::failure);
    TargetRecord mailbox, domain;
    const LookupStatus m = reader->read(key, mailbox);
    const LookupStatus d = reader->read(std::string(domain_key_of(key)), domain);
    if (m == LookupStatus::unavailable || d == LookupStatus::unavailable)
        return finish({Exit::failure, "store unavailable: " + reader->last_error()});
    const int64_t t = now();
    const json j = status_json(*cfg, key, m == LookupStatus::found ? &mailbox : nullptr,
                               d == LookupStatus::found ? &domain : nullptr, t);
    std::string suspended;
    for (const auto& [name, s] : j["services"].items())
        if (s["suspended"].get<bool>()) suspended += (suspended.empty() ? "" : ",") + name;
    if (!suspended.empty())
        return finish({Exit::refused, key + " cannot be deleted while suspended (" + suspended +
                                          "): lift the suspension first"});
    return finish({Exit::ok, key + " may be deleted"});
}

int cmd_init(const Options& o) {
    return with_writer(o, true, [&](const Config& cfg, StoreWriter& w) {
        std::string error;
        if (!Counters::open(cfg.store_path, true, cfg.counter_capacity, error))
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
        if (w.check(report)) {
            const StoreStats s = w.stats();
            return finish({Exit::ok, "store at " + cfg.store_path + " is consistent: generation " +
                                         std::to_string(s.generation) + ", " +
                                         std::to_string(s.used_slots) + " records, change " +
                                         std::to_string(s.seq)});
        }
        for (const auto& line : report) std::cerr << "mailsuspend: " << line << "\n";
        return finish({Exit::failure, std::to_string(report.size()) + " problem(s) found; "
                                      "`mailsuspend rebuild` rewrites the store from its records"});
    });
}

int cmd_rebuild(const Options& o) {
    return with_writer(o, false, [&](const Config&, StoreWriter& w) {
        std::string error;
        if (!w.rebuild(o.capacity, error)) return finish({Exit::failure, error});
        return finish({Exit::ok, "published generation " + std::to_string(w.stats().generation)});
    });
}

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
            k != "mode" && k != "lock" && k != "fail_queued" && k != "admin")
            return {Exit::bad_input, "unknown field '" + k + "'"};
    if (!text("op", op) || !text("target", o.target) || !text("services", o.services) ||
        !text("reason", o.reason) || !text("for", o.duration) || !text("mode", o.mode) ||
        !flag("lock", o.lock) || !flag("fail_queued", o.fail_queued) || !flag("admin", o.admin))
        return {Exit::bad_input, "a field has the wrong type"};
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

int cmd_batch(const Options& o) {
    std::vector<std::string> lines;
    for (std::string line; std::getline(std::cin, line);)
        lines.push_back(line);
    int applied = 0;
    return change(o, [&](Session& s) -> Outcome {
        for (std::size_t n = 0; n < lines.size(); ++n) {
            if (lines[n].find_first_not_of(" \t\r") == std::string::npos) continue;
            const json j = json::parse(lines[n], nullptr, false);
            Outcome r = j.is_discarded() ? Outcome{Exit::bad_input, "not valid JSON"} : batch_line(s, j);
            if (!r.ok())
                return {r.code, "line " + std::to_string(n + 1) + ": " + r.message + " (nothing applied)"};
            ++applied;
        }
        return {Exit::ok, "applied " + std::to_string(applied) + " change(s) in one transaction"};
    });
}

}  // namespace

int main(int argc, char** argv) {
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
    suspend->add_option("--for", o.duration, "lift automatically after (90s, 30m, 24h, 90d, 4d8h)");
    suspend->add_flag("--lock", o.lock, "only root with --admin may lift it");
    suspend->add_option("--mode", o.mode, "mail for it while receive is suspended: deliver, discard, reject, queue");
    suspend->add_flag("--fail-queued", o.fail_queued, "with send: fail its mail already queued");
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
    auto* can_delete = app.add_subcommand("can-delete", "exit 0 if the mailbox may be deleted, 3 while suspended");
    target(can_delete, "user@example.com");
    auto* sweep = app.add_subcommand("sweep", "lift expired suspensions and record them in the audit log");
    auto* check = app.add_subcommand("check", "verify the store");
    auto* rebuild = app.add_subcommand("rebuild", "rewrite the store as a new generation");
    rebuild->add_option("--capacity", o.capacity, "targets to size it for (default: current)");
    auto* batch = app.add_subcommand("batch", "apply JSON lines from stdin in one transaction");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(Exit::bad_input);
    }
    const std::pair<CLI::App*, int (*)(const Options&)> commands[] = {
        {init, cmd_init},       {suspend, cmd_suspend},   {unsuspend, cmd_unsuspend},
        {status, cmd_status},   {list, cmd_list},         {set_mode, cmd_set_mode},
        {can_delete, cmd_can_delete}, {sweep, cmd_sweep}, {check, cmd_check},
        {rebuild, cmd_rebuild}, {batch, cmd_batch}};
    try {
        for (const auto& [sub, run] : commands)
            if (sub->parsed()) return run(o);
    } catch (const std::exception& e) {
        std::cerr << "mailsuspend: " << e.what() << "\n";
        return static_cast<int>(Exit::failure);
    }
    return static_cast<int>(Exit::bad_input);
}
