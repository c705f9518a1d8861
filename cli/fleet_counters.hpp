// fleet.counters = "fleet" (issue 15): the agent's half of fleet-wide rate
// limits.  Exim keeps counting on its own node without a network call
// (<store>/counters) and notes whose counts changed (<store>/count-log).
// About once a second the agent
//  - shares: for each sender, domain and client IP counted since, this
//    node's window (its buckets) goes to Redis, rspamd-style, as one field of
//    <prefix>:count:<kind>:<key> (a hash per key and kind, one field per node,
//    signed with the fleet key, expiring with the window), and the keys are
//    announced on the stream <prefix>:counted;
//  - takes in: for each key another node announced, the other nodes' fields
//    are verified, summed bucket by bucket and set as the key's fleet share
//    in <store>/counters, which the next rate decision adds to its own count.
// Bounded overshoot: a node learns another's count at most about two
// exchange periods after it was made (the sharer's second, then the
// receiver's), so the fleet lets through at most the limit plus what the
// other nodes accepted for that key in those ~2 s; a node whose agent is
// stopped counts alone until it is back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "config.hpp"
#include "counters.hpp"
#include "fleet_change.hpp"

namespace mailsuspend {
class CountLog;
}  // namespace mailsuspend

namespace mailsuspend::cli {

class Redis;
struct Reply;

class CountExchange {
public:
    CountExchange(const Config& cfg, const FleetKey& key);
    ~CountExchange();
    // One exchange when a second has passed since the last one (else
    // nothing).  false with error_r when Redis failed; a missing count log
    // or counters file is logged (once) and skipped.
    bool step(Redis& redis, std::string& error_r);

private:
    bool open_files();
    bool share(Redis& redis, int64_t now, std::string& error_r);
    bool take_in(Redis& redis, int64_t now, std::string& error_r);
    // Sets the fleet share of (kind, key) from its hash's fields (the other nodes').
    void take_in_one(const std::pair<CounterKind, std::string>& counted, const std::string& hash, const Reply& fields,
                     int64_t now);

    const Config& cfg_;
    const FleetKey& key_;
    std::unique_ptr<CountLog> log_;
    std::unique_ptr<Counters> counters_;
    uint64_t log_pos_ = 0;
    uint64_t unfinished_at_ = UINT64_MAX;  // where the last read stopped at a slot being written
    std::string counted_id_ = "0-0";       // position in <prefix>:counted
    int64_t last_ms_ = 0;
    bool said_missing_ = false;
};

}  // namespace mailsuspend::cli
