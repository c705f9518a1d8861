#include "model.hpp"

#include <algorithm>

namespace mailsuspend {
namespace {

constexpr std::array<std::string_view, kServiceCount> kServiceNames = {
    "imap", "pop3", "webmail", "send", "webmail_send", "receive", "sieve"};
constexpr std::array<std::string_view, 5> kModeNames = {"default", "deliver", "discard", "reject",
                                                        "queue"};
constexpr std::array<std::string_view, 4> kSourceNames = {"admin", "rate", "spam", "self"};

template <typename Enum, std::size_t N>
std::optional<Enum> find_name(const std::array<std::string_view, N>& names, std::string_view name) {
    for (std::size_t i = 0; i < N; ++i)
        if (names[i] == name) return static_cast<Enum>(i);
    return std::nullopt;
}

}  // namespace

std::string_view service_name(Service s) { return kServiceNames[static_cast<int>(s)]; }

std::optional<Service> parse_service(std::string_view name) {
    return find_name<Service>(kServiceNames, name);
}

std::optional<uint8_t> parse_service_list(std::string_view list, std::string& error_r) {
    uint8_t mask = 0;
    if (list.empty()) {
        error_r = "empty service list";
        return std::nullopt;
    }
    while (true) {
        const auto comma = list.find(',');
        const std::string_view item = list.substr(0, comma);
        if (item == "all") {
            mask |= kAllServicesMask;
        } else if (auto s = parse_service(item)) {
            mask |= static_cast<uint8_t>(1u << static_cast<int>(*s));
        } else {
            error_r = "unknown service '" + std::string(item) +
                      "' (services: imap, pop3, webmail, send, webmail_send, receive, sieve, all)";
            return std::nullopt;
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return mask;
}

std::string service_list(uint8_t mask) {
    std::string out;
    for (int i = 0; i < kServiceCount; ++i) {
        if (!(mask & (1u << i))) continue;
        if (!out.empty()) out += ',';
        out += kServiceNames[i];
    }
    return out;
}

std::string_view mode_name(DeliveryMode m) { return kModeNames[static_cast<int>(m)]; }

std::optional<DeliveryMode> parse_mode(std::string_view name) {
    auto m = find_name<DeliveryMode>(kModeNames, name);
    if (m == DeliveryMode::unset) return std::nullopt;  // "default" is not a mode one sets
    return m;
}

std::string_view source_name(Source s) { return kSourceNames[static_cast<int>(s)]; }

std::optional<Source> parse_source(std::string_view name) {
    return find_name<Source>(kSourceNames, name);
}

std::string_view scope_name(Scope s) {
    switch (s) {
        case Scope::mailbox: return "mailbox";
        case Scope::domain: return "domain";
        default: return "none";
    }
}

uint8_t TargetRecord::in_force_mask(int64_t now) const {
    uint8_t mask = 0;
    for (int i = 0; i < kServiceCount; ++i)
        if (services[i].in_force(now)) mask |= static_cast<uint8_t>(1u << i);
    return mask;
}

bool TargetRecord::empty() const {
    const bool any_state = std::any_of(services.begin(), services.end(),
                                       [](const ServiceState& s) { return s.suspended; });
    // A fleet state with a stamp is kept even when it suspends nothing: it
    // is what a lift's stamp must be compared with (an erased record would
    // let an older suspension from another node come back).
    return !any_state && mode == DeliveryMode::unset && last_self_unblock == 0 &&
           auto_suspensions.empty() && hlc == 0;
}

uint64_t hlc_next(uint64_t last, int64_t now_ms) {
    const uint64_t wall = static_cast<uint64_t>(std::max<int64_t>(now_ms, 0)) << kHlcCounterBits;
    return std::max(wall, last + 1);
}

bool fleet_newer(const TargetRecord& a, const TargetRecord& b) {
    if (a.hlc != b.hlc) return a.hlc > b.hlc;
    return a.origin > b.origin;
}

EffectiveService effective(const TargetRecord* mailbox, const TargetRecord* domain, Service s,
                           int64_t now) {
    if (mailbox && mailbox->at(s).in_force(now)) return {mailbox->at(s), Scope::mailbox};
    if (domain && domain->at(s).in_force(now)) return {domain->at(s), Scope::domain};
    return {};
}

// The mailbox's own mode wins over its domain's; both over the config.
DeliveryMode effective_mode(DeliveryMode mailbox, DeliveryMode domain, DeliveryMode config_default) {
    if (mailbox != DeliveryMode::unset) return mailbox;
    if (domain != DeliveryMode::unset) return domain;
    return config_default;
}

DeliveryMode effective_mode(const TargetRecord* mailbox, const TargetRecord* domain,
                            DeliveryMode config_default) {
    return effective_mode(mailbox ? mailbox->mode : DeliveryMode::unset, domain ? domain->mode : DeliveryMode::unset,
                          config_default);
}

}  // namespace mailsuspend
