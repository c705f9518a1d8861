#include "operations.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>

#include "address.hpp"
#include "held_mail.hpp"
#include "spawn.hpp"
#include "store.hpp"
#include "text.hpp"
#include "usage.hpp"

namespace mailsuspend {

using nlohmann::json;

namespace {

Outcome bad(std::string message) { return {Exit::bad_input, std::move(message)}; }
Outcome refused(std::string message) { return {Exit::refused, std::move(message)}; }

bool in_mask(uint8_t mask, int service) { return mask & (1u << service); }

json time_json(int64_t t) { return t == 0 ? json(nullptr) : json(t); }

json service_json(const ServiceState& s, bool in_force, Scope scope) {
    if (!in_force) return {{"suspended", false}, {"reason", nullptr}, {"since", nullptr},
                           {"expires", nullptr}, {"locked", false}, {"source", nullptr},
                           {"scope", nullptr}};
    json j = {{"suspended", true},
              {"reason", s.reason},
              {"since", time_json(s.since)},
              {"expires", time_json(s.expires)},
              {"locked", s.locked},
              {"source", source_name(s.source)},
              {"scope", scope_name(scope)}};
    if (s.fail_queued) j["fail_queued"] = true;
    if (s.hold) j["hold"] = true;
    return j;
}

// Only the suspended services of a record: what an audit line needs.
json suspended_json(const TargetRecord& r, int64_t now) {
    json out = json::object();
    const Scope scope = r.is_domain() ? Scope::domain : Scope::mailbox;
    for (int i = 0; i < kServiceCount; ++i)
        if (r.services[i].suspended)
            out[std::string(service_name(static_cast<Service>(i)))] =
                service_json(r.services[i], true, scope);
    if (r.mode != DeliveryMode::unset) out["delivery_mode"] = mode_name(r.mode);
    (void)now;
    return out;
}

}  // namespace

json record_json(const TargetRecord& r, int64_t now) {
    json services = json::object();
    const Scope scope = r.is_domain() ? Scope::domain : Scope::mailbox;
    for (int i = 0; i < kServiceCount; ++i)
        services[std::string(service_name(static_cast<Service>(i)))] =
            service_json(r.services[i], r.services[i].in_force(now), scope);
    return {{"target", r.key}, {"delivery_mode", mode_name(r.mode)}, {"services", services}};
}

json status_json(const Config& cfg, const std::string& key, const TargetRecord* mailbox,
                 const TargetRecord* domain, int64_t now) {
    json services = json::object();
    for (int i = 0; i < kServiceCount; ++i) {
        const auto s = static_cast<Service>(i);
        const EffectiveService e = effective(mailbox, domain, s, now);
        json& j = services[std::string(service_name(s))];
        j = service_json(e.state, e.scope != Scope::none, e.scope);
        // In a fleet: the node whose change put it in force.
        const TargetRecord* from = e.scope == Scope::mailbox ? mailbox : e.scope == Scope::domain ? domain : nullptr;
        if (from && !from->origin.empty()) j["origin"] = from->origin;
    }
    // The node that made the target's own state and the stamp of that change
    // (null: no fleet, or no record): the pair names the change in force, the
    // same on every node and in the Redis snapshot once they agree.
    const TargetRecord* own = !key.empty() && key.front() == '@' ? domain : mailbox;
    return {{"target", key},
            {"delivery_mode", mode_name(effective_mode(mailbox, domain, cfg.default_mode))},
            {"origin", own && !own->origin.empty() ? json(own->origin) : json(nullptr)},
            {"stamp", own && own->hlc != 0 ? json(own->hlc) : json(nullptr)},
            {"services", services}};
}

Session::Session(const Config& cfg, StoreWriter& writer, Actor actor, int64_t now)
    : cfg_(cfg), writer_(writer), actor_(std::move(actor)), now_(now) {}

TargetRecord* Session::load(const std::string& key, std::string& error_r) {
    auto it = pending_.find(key);
    if (it != pending_.end()) return &it->second;
    TargetRecord r;
    if (!writer_.get(key, r)) {
        error_r = "cannot read " + key + " from the store";
        return nullptr;
    }
    before_.emplace(key, r);
    return &pending_.emplace(key, std::move(r)).first->second;
}

// The fields every audit line starts with.
json Session::line(const std::string& key, const std::string& action) const {
    return {{"time", now_}, {"actor", {{"uid", actor_.uid}, {"name", actor_.name}}}, {"action", action}, {"target", key}};
}

json& Session::note(const std::string& key, const std::string& action, uint8_t services, const std::string& reason) {
    json l = line(key, action);
    l["services"] = service_list(services);
    if (!reason.empty()) l["reason"] = reason;
    return audit_.emplace_back(std::move(l));
}

void Session::record_event(const std::string& key, const std::string& action, json fields) {
    json l = line(key, action);
    l.update(fields);
    events_.push_back(std::move(l));
}

// The history escalation counts (limits.escalate_after within 30 days); older
// entries can never count again, so they are dropped and the record stays small.
static void note_automatic_suspension(TargetRecord& r, int64_t now) {
    auto& times = r.auto_suspensions;
    times.erase(std::remove_if(times.begin(), times.end(), [&](int64_t t) { return t <= now - kEscalationWindow; }),
                times.end());
    times.push_back(now);
}

Outcome Session::suspend(const SuspendArgs& a) {
    std::string key;
    if (Outcome o = normalise_target(cfg_, a.target, key); !o.ok()) return o;
    if (a.services == 0) return bad("no service given (--service LIST)");
    if (std::string why; !check_free_text(a.reason, kMaxReason, why))
        return bad("reason " + why);
    if (a.duration < 0) return bad("negative duration");
    const bool with_send = in_mask(a.services, static_cast<int>(Service::send));
    if (a.hold && !with_send) return bad("--hold needs the send service");
    if (a.hold && a.fail_queued) return bad("--hold and --fail-queued exclude each other: held mail is kept, failed mail bounces");
    std::string error;
    TargetRecord* r = load(key, error);
    if (!r) return {Exit::failure, error};
    bool kept_lock = false;
    for (int i = 0; i < kServiceCount; ++i) {
        if (!in_mask(a.services, i)) continue;
        ServiceState& s = r->services[i];
        // A re-suspend never weakens a lock: only root's unsuspend --admin may
        // lift or shorten it, so the lock stays and the later end wins.
        const bool keep_lock = s.in_force(now_) && s.locked;
        int64_t expires = a.duration ? now_ + a.duration : 0;
        if (keep_lock) expires = (expires == 0 || s.expires == 0) ? 0 : std::max(expires, s.expires);
        kept_lock |= keep_lock;
        s = ServiceState{true, a.lock || keep_lock, false, now_, expires, a.source, a.reason};
        if (static_cast<Service>(i) == Service::send) {
            s.fail_queued = a.fail_queued;
            s.hold = a.hold;
        }
    }
    if (a.mode) r->mode = *a.mode;
    if (a.source != Source::admin) note_automatic_suspension(*r, now_);
    if (a.fail_queued && with_send) fail_queued_.push_back(key);
    note(key, "suspend", a.services, a.reason);
    return {Exit::ok, "suspended " + service_list(a.services) + " for " + key +
                          (a.duration ? " until " + format_time(now_ + a.duration) : "") +
                          (kept_lock ? " (locked services keep their lock and the later end)" : "")};
}

Outcome Session::unsuspend(const UnsuspendArgs& a) {
    std::string key;
    if (Outcome o = normalise_target(cfg_, a.target, key); !o.ok()) return o;
    std::string error;
    TargetRecord* r = load(key, error);
    if (!r) return {Exit::failure, error};
    uint8_t lifting = a.services & r->in_force_mask(now_);
    for (int i = 0; i < kServiceCount; ++i) {
        const ServiceState& s = r->services[i];
        if (!in_mask(lifting, i)) continue;
        const std::string name(service_name(static_cast<Service>(i)));
        if (s.locked && !(a.admin && actor_.is_root()))
            return refused(name + " of " + key + " is locked: only root with --admin may lift it");
        if (a.self_service && s.source == Source::admin)
            return refused(name + " of " + key + " was suspended by an administrator: "
                           "self-service cannot lift it");
    }
    if (a.self_service && lifting) {
        const int64_t next = r->last_self_unblock + cfg_.self_service_interval;
        if (r->last_self_unblock != 0 && now_ < next)
            return refused("self-service unblock already used on " + format_time(r->last_self_unblock) +
                           "; next possible on " + format_time(next));
        r->last_self_unblock = now_;
    }
    const bool held = r->at(Service::send).hold;
    for (int i = 0; i < kServiceCount; ++i)
        if (in_mask(a.services, i) && r->services[i].suspended) {
            if (!in_mask(lifting, i)) lifting |= static_cast<uint8_t>(1u << i);  // expired: tidy up
            r->services[i] = ServiceState{};
        }
    if (!lifting) return {Exit::ok, nothing_to_lift(key, a.services)};
    if (in_mask(lifting, static_cast<int>(Service::receive))) flush_.push_back(key);
    // A lifted send suspension starts afresh: else the next message inside the
    // old window crosses the limit again (and escalates).
    if (in_mask(lifting, static_cast<int>(Service::send))) reset_counters_.push_back(key);
    if (held && in_mask(lifting, static_cast<int>(Service::send))) release_.push_back(key);
    note(key, a.self_service ? "self-service-unsuspend" : "unsuspend", lifting, "");
    return {Exit::ok, "lifted " + service_list(lifting) + " for " + key};
}

// Says why nothing was lifted, naming the domain when it is what suspends the mailbox.
std::string Session::nothing_to_lift(const std::string& key, uint8_t services) {
    std::string message = key + " had none of " + service_list(services) + " suspended itself";
    if (key.front() == '@') return message;
    const std::string domain(domain_key_of(key));
    TargetRecord d;
    bool exists = false;
    if (writer_.get(domain, d, &exists) && exists && (d.in_force_mask(now_) & services))
        message += "; still suspended through " + domain + ": " +
                   service_list(d.in_force_mask(now_) & services) + " (unsuspend " + domain + " to lift)";
    return message;
}

Outcome Session::set_mode(const std::string& target, DeliveryMode mode) {
    std::string key;
    if (Outcome o = normalise_target(cfg_, target, key); !o.ok()) return o;
    std::string error;
    TargetRecord* r = load(key, error);
    if (!r) return {Exit::failure, error};
    const DeliveryMode before = r->mode == DeliveryMode::unset ? cfg_.default_mode : r->mode;
    r->mode = mode;
    // Mail held for a receive-suspended target while its mode was queue is now
    // for the new mode to route (deliver, discard or bounce): at once, not at
    // the next retry.  Only then: a panel's batch of set-modes must not start
    // a queue run per line.
    const bool receive_held = in_mask(r->in_force_mask(now_), static_cast<int>(Service::receive));
    if (before == DeliveryMode::queue && mode != DeliveryMode::queue && receive_held) flush_.push_back(key);
    note(key, "set-mode " + std::string(mode_name(mode)), 0, "");
    return {Exit::ok, key + " delivery mode " + std::string(mode_name(mode))};
}

Outcome Session::sweep(int& lifted) {
    lifted = 0;
    std::vector<std::string> expired;
    const bool ok = writer_.for_each([&](const TargetRecord& r) {
        for (const auto& s : r.services)
            if (s.suspended && !s.in_force(now_)) {
                expired.push_back(r.key);
                break;
            }
    });
    if (!ok) return {Exit::failure, "cannot read the store"};
    for (const auto& key : expired) {
        std::string error;
        TargetRecord* r = load(key, error);
        if (!r) return {Exit::failure, error};
        uint8_t mask = 0;
        for (int i = 0; i < kServiceCount; ++i) {
            if (!r->services[i].suspended || r->services[i].in_force(now_)) continue;
            r->services[i] = ServiceState{};
            mask |= static_cast<uint8_t>(1u << i);
        }
        if (in_mask(mask, static_cast<int>(Service::receive))) flush_.push_back(key);
        note(key, "expire", mask, "");
        lifted += __builtin_popcount(mask);
    }
    return {Exit::ok, "lifted " + std::to_string(lifted) + " expired suspension(s) on " +
                          std::to_string(expired.size()) + " target(s)"};
}

Outcome Session::reset_usage(const std::string& target, const std::string& ip) {
    std::string key, canonical;
    if (Outcome o = usage_subject(cfg_, target, ip, key, canonical); !o.ok()) return o;
    usage_resets_.push_back({key, canonical});
    return {Exit::ok, "rate counters of " + key + (canonical.empty() ? "" : " and of " + canonical) + " cleared"};
}

Outcome Session::extend_send(const std::string& key, int64_t expires, const std::string& reason) {
    std::string error;
    TargetRecord* r = load(key, error);
    if (!r) return {Exit::failure, error};
    ServiceState& s = r->at(Service::send);
    const int64_t before = s.expires;
    s.expires = expires;
    json& l = note(key, "extend", kSendMask, reason);
    l["expires_before"] = before;
    l["expires"] = expires;
    return {Exit::ok, "rate suspension of " + key + " extended until " + format_time(expires)};
}

Outcome Session::apply_fleet_change(const TargetRecord& state, bool& applied, bool audit_each) {
    applied = false;
    std::string error;
    TargetRecord* r = load(state.key, error);
    if (!r) return {Exit::failure, error};
    if (!fleet_newer(state, *r)) return {Exit::ok, state.key + ": not newer than the state here"};
    const uint8_t lifted = r->in_force_mask(now_) & ~state.in_force_mask(now_);
    *r = state;
    from_fleet_[state.key] = true;
    applied = true;
    if (in_mask(lifted, static_cast<int>(Service::receive))) flush_.push_back(state.key);
    if (audit_each) {
        json& l = note(state.key, "fleet-apply", state.in_force_mask(now_), "");
        l.update({{"origin", state.origin}, {"hlc", state.hlc}});
    }
    return {Exit::ok, state.key + ": applied the change of " + state.origin};
}

// A local change in a fleet carries this node's id and a stamp later than
// the state it replaces (hlc_next): the per-target clock is the record's own
// stamp, so no clock state lives outside the store.
void Session::stamp(TargetRecord& r) const {
    if (!cfg_.fleet.enabled) return;
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    r.hlc = hlc_next(before_.at(r.key).hlc, now_ms);
    r.origin = cfg_.fleet.node_id;
}

// Journals and applies the record changes; lines gets their audit lines.
// seq: the change's sequence number, 0 when no record changed.
Outcome Session::commit_records(uint64_t& seq) {
    seq = 0;
    std::vector<Change> changes;
    for (auto& [key, r] : pending_) {
        if (r == before_.at(key)) continue;
        if (!from_fleet_.count(key)) stamp(r);
        changes.push_back({r});
    }
    if (changes.empty()) return {};
    std::string error;
    // The audit lines are written (and synced) before the journal: a change
    // the log cannot record is not made, and lines of a change whose journal
    // write fails are cut off again (StoreWriter::commit).
    int64_t audit_size = -1;
    const auto audit = [&](uint64_t last_seq, std::string& error_r) {
        for (auto& line : audit_) {
            line["seq"] = last_seq;
            const std::string& key = line["target"].get_ref<const std::string&>();
            line["before"] = suspended_json(before_.at(key), now_);
            line["after"] = suspended_json(pending_.at(key), now_);
        }
        if (append_audit(cfg_.audit_log, audit_, error_r, &audit_size)) return true;
        error_r = "the audit log cannot record it: " + error_r;
        return false;
    };
    seq = writer_.commit(changes, error, audit, [&] { undo_audit(cfg_.audit_log, audit_size); });
    if (seq == 0) return {Exit::failure, "nothing changed: " + error};
    return {};
}

// Clears the counters reset_usage() asked for; their audit lines carry the
// counts cleared ("before") and no seq: the counters are not in the journal.
Outcome Session::commit_usage_resets(std::vector<json>& lines) {
    if (usage_resets_.empty()) return {};
    std::unique_ptr<Counters> counters;
    if (Outcome o = open_counters(cfg_, counters); !o.ok()) return o;
    for (const auto& r : usage_resets_) {
        json before = json::object(), after = json::object();
        for (const auto& c : usage_of(cfg_, *counters, r.key, r.ip, now_).counters) before[c.limit_name] = c.count;
        mailsuspend::reset_usage(cfg_, *counters, r.key, r.ip);
        for (const auto& c : usage_of(cfg_, *counters, r.key, r.ip, now_).counters) after[c.limit_name] = c.count;
        json l = line(r.key, "reset-usage");
        l.update({{"services", "send"}, {"before", before}, {"after", after}});
        if (!r.ip.empty()) l["ip"] = r.ip;
        lines.push_back(std::move(l));
    }
    return {};
}

void Session::clear() {
    pending_.clear();
    before_.clear();
    from_fleet_.clear();
    reset_counters_.clear();
    usage_resets_.clear();
    flush_.clear();
    fail_queued_.clear();
    release_.clear();
    audit_.clear();
    events_.clear();
}

Outcome Session::commit(std::vector<std::string>& warnings) {
    std::vector<json> lines = std::move(events_);
    events_.clear();
    uint64_t seq = 0;
    if (Outcome o = commit_records(seq); !o.ok()) return o;
    if (seq != 0 && !writer_.notify_warning().empty())
        warnings.push_back("live sessions are not told of the change at once: " + writer_.notify_warning());
    if (seq == 0 && usage_resets_.empty() && lines.empty()) return {};  // nothing changed
    const Outcome reset = commit_usage_resets(lines);
    // The records' lines went out with their change (commit_records); events
    // and counter resets are not journaled, so theirs follow, and a failure
    // to write them is a warning: what they record has happened.
    if (std::string e; !append_audit(cfg_.audit_log, lines, e))
        warnings.push_back("recorded, but the audit log failed: " + e);
    if (!reset.ok()) return reset;
    for (const auto& key : flush_)
        if (std::string e; !run_command(cfg_.flush_command, key, e, address_regex(key, cfg_.address)))
            warnings.push_back("queue flush for " + key + " failed: " + e);
    for (const auto& key : reset_counters_)
        if (std::string e; !reset_rate_counters(cfg_, key, e))
            warnings.push_back("rate counters of " + key + " not reset: " + e);
    for (const auto& key : fail_queued_)
        if (std::string e; !run_command(cfg_.fail_queued_command, key, e, address_regex(key, cfg_.address)))
            warnings.push_back("failing queued mail of " + key + " failed: " + e);
    for (const auto& key : release_)
        if (std::string e; !deliver_held_mail(cfg_, key, e))
            warnings.push_back("held mail of " + key + " not delivered at once (the next queue run will): " + e);
    clear();
    return {};
}

bool run_command(const std::string& templ, const std::string& address, std::string& error_r,
                 const std::string& address_regex) {
    // {address_regex} first: "{address}" is not a part of it.
    auto args = command_words(templ, {{"{address_regex}", address_regex}, {"{address}", address}});
    if (args.empty()) return true;  // no command configured
    return run_program(std::move(args), error_r);
}

}  // namespace mailsuspend
