// `mailsuspend fleet-status [--json]`: where this node is in the fleet's
// stream, how far behind, what it has not published yet, and every node seen
// with its last heartbeat.  Local facts are shown even when Redis is away.
#include <ctime>
#include <iostream>

#include <nlohmann/json.hpp>

#include "fleet_redis.hpp"
#include "fleet_state.hpp"
#include "fleet_sync.hpp"
#include "operations.hpp"
#include "store.hpp"

using nlohmann::json;

namespace mailsuspend::cli {
namespace {

constexpr int kLagCountCap = 100000;  // counted exactly up to this many entries

json local_status(const Config& cfg, std::string& error_r) {
    FleetPosition pos;
    if (!load_fleet_position(cfg, pos, error_r)) return nullptr;
    auto reader = StoreReader::open(cfg.store_path, error_r);
    if (!reader) return nullptr;
    std::vector<TargetRecord> pending;
    if (!unpublished_changes(*reader, cfg.fleet.node_id, pos.published_seq, UINT64_MAX, pending))
        return error_r = reader->last_error(), nullptr;
    return {{"node", cfg.fleet.node_id},
            {"position", pos.stream_id.empty() ? json(nullptr) : json(pos.stream_id)},
            {"published_seq", pos.published_seq},
            {"unpublished", pending.size()},
            {"counters", cfg.fleet.counters == FleetConfig::Counters::fleet ? "fleet" : "node"}};
}

// Entries after position (capped) and the age of the oldest of them.
void add_lag(Redis& redis, const std::string& stream, json& out) {
    const std::string pos = out["position"].is_null() ? "-" : "(" + out["position"].get<std::string>();
    Reply after;
    std::string why;
    if (!redis.run({"XRANGE", stream, pos, "+", "COUNT", std::to_string(kLagCountCap)}, after, why)) return;
    out["lag_changes"] = after.elements.size();
    const int64_t oldest = after.elements.empty() ? 0 : stream_id_millis(after.elements[0].elements.at(0).str);
    out["lag_seconds"] = oldest == 0 ? 0 : std::max<int64_t>(0, std::time(nullptr) - oldest / 1000);
}

json nodes_seen(Redis& redis, const std::string& prefix) {
    json nodes = json::array();
    Reply ids;
    std::string why;
    if (!redis.run({"SMEMBERS", prefix + ":nodes"}, ids, why)) return nodes;
    for (const Reply& id : ids.elements) {
        Reply h;
        if (!redis.run({"HGETALL", prefix + ":node:" + id.str}, h, why)) continue;
        const Reply* time = h.field("time");
        const Reply* position = h.field("position");
        const int64_t at = time ? std::atoll(time->str.c_str()) : 0;
        nodes.push_back({{"node", id.str},
                         {"position", position ? json(position->str) : json(nullptr)},
                         {"heartbeat", at},
                         {"heartbeat_age", at ? std::time(nullptr) - at : -1}});
    }
    return nodes;
}

void print_text(const json& s) {
    std::cout << "node " << s["node"].get<std::string>() << "\n";
    std::cout << "position " << (s["position"].is_null() ? "(none: resynchronises from the snapshot)"
                                                         : s["position"].get<std::string>())
              << "\n";
    std::cout << "unpublished local changes " << s["unpublished"] << "\n";
    std::cout << "rate limits count per " << s["counters"].get<std::string>() << "\n";
    if (!s["redis"]["reachable"].get<bool>()) {
        std::cout << "redis unreachable: " << s["redis"]["error"].get<std::string>() << "\n";
        return;
    }
    std::cout << "redis " << s["redis"]["address"].get<std::string>() << "\n";
    if (s.contains("lag_changes"))
        std::cout << "lag " << s["lag_changes"] << " change(s), " << s["lag_seconds"] << " s\n";
    for (const auto& n : s["nodes"])
        std::cout << "node seen " << n["node"].get<std::string>() << " at " << n["position"].dump()
                  << ", heartbeat " << n["heartbeat_age"] << " s ago\n";
}

}  // namespace

int cmd_fleet_status(const Options& o) {
    int code = 0;
    auto cfg = load_fleet_config(o.config, code);
    if (!cfg) return code;
    std::string error;
    json s = local_status(*cfg, error);
    if (s.is_null()) return std::cerr << "mailsuspend: " << error << "\n", static_cast<int>(Exit::failure);
    auto redis = Redis::connect(cfg->fleet, error);
    s["redis"] = redis ? json{{"reachable", true}, {"address", redis->address()}}
                       : json{{"reachable", false}, {"error", error}};
    if (redis) {
        add_lag(*redis, cfg->fleet.key_prefix + ":changes", s);
        s["nodes"] = nodes_seen(*redis, cfg->fleet.key_prefix);
    }
    if (o.json) std::cout << s.dump() << "\n";
    else print_text(s);
    return static_cast<int>(redis ? Exit::ok : Exit::failure);
}

}  // namespace mailsuspend::cli
