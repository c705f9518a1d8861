// `mailsuspend held` and `release`: the mail a send hold keeps in Exim's
// queue (suspend --hold; limits.action / spam.action "hold").
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "config.hpp"
#include "held_mail.hpp"
#include "operations.hpp"
#include "outcome.hpp"
#include "text.hpp"

using nlohmann::json;

namespace mailsuspend::cli {
namespace {

json held_json(const HeldMessage& m, int64_t at) {
    return {{"id", m.id},           {"held_for", m.held_for}, {"sender", m.sender},
            {"received", m.received}, {"age", at - m.received}, {"size", m.size},
            {"recipients", m.recipients}, {"subject", m.subject}};
}

void print_held(const std::string& key, const std::vector<HeldMessage>& held, int64_t at) {
    if (held.empty()) {
        std::cout << "no mail held for " << key << "\n";
        return;
    }
    for (const auto& m : held) {
        std::cout << m.id << "  " << format_duration(at - m.received) << "  " << m.size << " octets  from "
                  << escape_for_display(m.held_for) << "  " << escape_for_display(m.subject, 80) << "\n   ";
        for (const auto& r : m.recipients) std::cout << " " << escape_for_display(r);
        std::cout << "\n";
    }
}

std::vector<std::string> ids_of(const std::vector<HeldMessage>& held) {
    std::vector<std::string> ids;
    for (const auto& m : held) ids.push_back(m.id);
    return ids;
}

// The target's send as `status --json` shows it: whether a hold is in force
// on the target itself (refused with the reason when send is suspended some
// other way, or held through the mailbox's domain).
bool own_hold(const json& status, const std::string& key, bool& held, Outcome& refusal) {
    const json& send = status["services"]["send"];
    held = send["suspended"].get<bool>();
    if (!held) return true;
    if (!send.value("hold", false))
        return refusal = {Exit::refused, "send of " + key + " is suspended, not held: its mail is refused, "
                                         "none is held (unsuspend lifts it)"},
               false;
    if (send["scope"] == "domain" && key.front() != '@')
        return refusal = {Exit::refused, key + " is held through its domain: release @" +
                                             key.substr(key.find('@') + 1) + " instead"},
               false;
    return true;
}

}  // namespace

int cmd_held(const Options& o) {
    int code = 0;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    std::string key, error;
    if (Outcome n = normalise_target(*cfg, o.target, key); !n.ok()) return finish(n);
    std::vector<HeldMessage> held;
    if (!find_held_mail(*cfg, key, held, error)) return finish({Exit::failure, "cannot read Exim's queue: " + error});
    const int64_t at = now();
    if (!o.json) return print_held(key, held, at), 0;
    json out = json::array();
    for (const auto& m : held) out.push_back(held_json(m, at));
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return 0;
}

// Lifts the target's hold (if one is in force) and delivers its held mail at
// once, or removes it (--delete) while the writer lock keeps the hold in
// place: no queue run can deliver what is being removed.
int cmd_release(const Options& o) {
    int code = 0;
    std::string key, error;
    const auto status = effective_status(o, key, code);
    if (!status) return code;
    auto cfg = config_or_exit(o, code);
    if (!cfg) return code;
    bool lifting = false;
    if (Outcome refusal; !own_hold(*status, key, lifting, refusal)) return finish(refusal);
    std::vector<HeldMessage> held;
    if (!find_held_mail(*cfg, key, held, error)) return finish({Exit::failure, "cannot read Exim's queue: " + error});
    const std::vector<std::string> ids = ids_of(held);
    if (!lifting && ids.empty()) return finish({Exit::ok, "no mail held for " + key});
    code = change(o, [&](Session& s) -> Outcome {
        if (lifting) {
            UnsuspendArgs a;
            a.target = key;
            a.services = kSendMask;
            a.admin = o.admin;
            if (Outcome u = s.unsuspend(a); !u.ok()) return u;
        }
        if (o.delete_held && !exim_on_messages(*cfg, "-Mrm", ids, error))
            return {Exit::failure, "held mail of " + key + " not removed (the hold stays): " + error};
        s.record_event(key, o.delete_held ? "delete-held" : "release-held",
                       {{"messages", ids.size()}, {"ids", ids}});
        return {Exit::ok, std::string(o.delete_held ? "deleted " : "released ") + std::to_string(ids.size()) +
                              " held message(s) of " + key + (lifting ? "; send is no longer held" : "")};
    });
    // The lift's commit delivered them; a hold already gone (expired) did not.
    if (code == 0 && !lifting && !o.delete_held && !exim_on_messages(*cfg, "-M", ids, error))
        std::cerr << "mailsuspend: warning: held mail of " << key
                  << " not delivered at once (the next queue run will): " << error << "\n";
    return code;
}

}  // namespace mailsuspend::cli
