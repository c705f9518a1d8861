// The suspension model: services, per-service state, per-target records,
// and the rules that turn stored state into what is in force now.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ms_store.h"

namespace mailsuspend {

enum class Service : uint8_t { imap, pop3, webmail, send, webmail_send, receive, sieve };
constexpr int kServiceCount = 7;
// A service's value is its bit in a store slot (ms_store.h: part of the layout).
static_assert(static_cast<int>(Service::imap) == MS_SERVICE_IMAP && static_cast<int>(Service::pop3) == MS_SERVICE_POP3 &&
              static_cast<int>(Service::webmail) == MS_SERVICE_WEBMAIL && static_cast<int>(Service::send) == MS_SERVICE_SEND &&
              static_cast<int>(Service::webmail_send) == MS_SERVICE_WEBMAIL_SEND &&
              static_cast<int>(Service::receive) == MS_SERVICE_RECEIVE && static_cast<int>(Service::sieve) == MS_SERVICE_SIEVE &&
              kServiceCount == MS_SERVICE_COUNT);
constexpr uint8_t kAllServicesMask = (1u << kServiceCount) - 1;
constexpr uint8_t kSendMask = 1u << static_cast<int>(Service::send);
// The automatic suspension after limits.escalate_after automatic ones within
// this window has no expiry and is locked (policy.hpp); a lift forgets them.
constexpr int64_t kEscalationWindow = 30 * 86400;

// What the Exim module puts in $local_scan_data of a message it holds,
// followed by the sending identity (admin/held_mail.hpp reads it back).
constexpr std::string_view kHeldMark = "mailsuspend-held ";

// Delivery mode for mail received while "receive" is suspended.
// unset = the config's delivery.default_mode.
enum class DeliveryMode : uint8_t { unset = 0, deliver, discard, reject, queue };

// Who suspended: an admin/panel, the rate limiter, spam reports.
enum class Source : uint8_t { admin = 0, rate, spam, self };

enum class Scope : uint8_t { none = 0, mailbox, domain };

std::string_view service_name(Service s);
std::optional<Service> parse_service(std::string_view name);
// "imap,pop3" or "all" -> bit mask; nullopt with the bad part named in error_r.
std::optional<uint8_t> parse_service_list(std::string_view list, std::string& error_r);
std::string service_list(uint8_t mask);  // mask -> "imap,pop3"

std::string_view mode_name(DeliveryMode m);
std::optional<DeliveryMode> parse_mode(std::string_view name);
std::string_view source_name(Source s);
std::optional<Source> parse_source(std::string_view name);
std::string_view scope_name(Scope s);

struct ServiceState {
    bool suspended = false;
    bool locked = false;       // only root with --admin may lift it
    bool fail_queued = false;  // send: queued mail from this sender fails
    int64_t since = 0;         // epoch seconds
    int64_t expires = 0;       // epoch seconds; 0 = never
    Source source = Source::admin;
    std::string reason;        // admin's free text (validated: printable)
    bool hold = false;         // send: its mail is accepted and held in Exim's queue, not refused
    // Who acted is in the audit log only: the store is readable by every mail
    // process (store.read_group), which needs the reason, not the actor.

    // Suspended and not yet expired at now: expiry counts at read time.
    bool in_force(int64_t now) const { return suspended && (expires == 0 || now < expires); }
    bool operator==(const ServiceState&) const = default;
};

// One stored target: a mailbox "user@example.com" or a domain "@example.com".
struct TargetRecord {
    std::string key;  // normalised
    std::array<ServiceState, kServiceCount> services{};
    DeliveryMode mode = DeliveryMode::unset;
    int64_t last_self_unblock = 0;          // epoch of the last self-service lift
    std::vector<int64_t> auto_suspensions;  // epochs of automatic suspensions (escalation)
    uint64_t seq = 0;                       // change sequence number that wrote it
    // The fleet (issue 15): the hybrid logical clock stamp of the change that
    // made this state, and the node that made it; 0 and "" on a single node.
    // Last writer wins per target by (hlc, origin): fleet_newer().
    uint64_t hlc = 0;
    std::string origin;

    ServiceState& at(Service s) { return services[static_cast<int>(s)]; }
    const ServiceState& at(Service s) const { return services[static_cast<int>(s)]; }
    bool is_domain() const { return !key.empty() && key.front() == '@'; }
    // Bits of services in force at now.
    uint8_t in_force_mask(int64_t now) const;
    // Nothing worth keeping: no suspension, no mode, no history.
    bool empty() const;
    bool operator==(const TargetRecord&) const = default;
};

// A hybrid logical clock stamp: milliseconds since the epoch << 16 | a
// counter, so stamps order like time and still grow when the clock does not.
constexpr int kHlcCounterBits = 16;
// The stamp for a change of a target whose current state has stamp last:
// later than last (causality: a change made after seeing a state wins over
// it) and not behind the wall clock now_ms.
uint64_t hlc_next(uint64_t last, int64_t now_ms);
// Milliseconds since the epoch of a stamp.
inline int64_t hlc_millis(uint64_t hlc) { return static_cast<int64_t>(hlc >> kHlcCounterBits); }
// Whether state a replaces state b under the fleet's rule: last writer wins by
// (hlc, origin), the node id breaking a tie.  Strict: a state never replaces
// itself, so applying a change twice changes nothing.
bool fleet_newer(const TargetRecord& a, const TargetRecord& b);

// Effective state of one service for a mailbox: its own united with its domain's.
struct EffectiveService {
    ServiceState state;  // the one in force (mailbox's first), or empty
    Scope scope = Scope::none;
};

EffectiveService effective(const TargetRecord* mailbox, const TargetRecord* domain,
                           Service s, int64_t now);
DeliveryMode effective_mode(const TargetRecord* mailbox, const TargetRecord* domain,
                            DeliveryMode config_default);
// The same precedence on the modes alone (unset: none of its own).
DeliveryMode effective_mode(DeliveryMode mailbox, DeliveryMode domain, DeliveryMode config_default);

}  // namespace mailsuspend
