#include "fleet_counters.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "address.hpp"
#include "agent.hpp"
#include "count_log.hpp"
#include "counters.hpp"
#include "fleet_redis.hpp"
#include "signing.hpp"

namespace mailsuspend::cli {
namespace {

constexpr int64_t kExchangeMs = 1000;
constexpr std::size_t kKeysPerScript = 500;
constexpr const char* kReadCount = "200";        // announcements read per XREAD
constexpr const char* kAnnouncements = "100000";  // <prefix>:counted keeps about this many

// KEYS: the count hashes, then the announcement stream.  ARGV: this node,
// the announcement, then a value and a time to live per hash.
const char* const kShareScript = R"lua(
local n = #KEYS - 1
for i = 1, n do
  redis.call('HSET', KEYS[i], ARGV[1], ARGV[1 + 2 * i])
  redis.call('EXPIRE', KEYS[i], ARGV[2 + 2 * i])
end
redis.call('XADD', KEYS[n + 1], 'MAXLEN', '~', ARGV[#ARGV], '*', 'node', ARGV[1], 'keys', ARGV[2])
return n
)lua";

const char* const kFetchScript = R"lua(
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGETALL', k) end
return out
)lua";

using Counted = std::pair<CounterKind, std::string>;  // a kind and the key it counts

// The kinds a fleet shares: the limits of count_message (policy.hpp).
bool shared_kind(int kind) {
    switch (static_cast<CounterKind>(kind)) {
        case CounterKind::messages:
        case CounterKind::offdomain_rcpts:
        case CounterKind::domain_messages:
        case CounterKind::domain_offdomain_rcpts:
        case CounterKind::ip_offdomain_rcpts:
            return true;
        default:
            return false;
    }
}

void add_counted(const CountedMessage& m, std::set<Counted>& out) {
    const std::string domain(domain_key_of(m.sender));
    out.insert({CounterKind::messages, m.sender});
    out.insert({CounterKind::offdomain_rcpts, m.sender});
    if (!domain.empty()) {
        out.insert({CounterKind::domain_messages, domain});
        out.insert({CounterKind::domain_offdomain_rcpts, domain});
    }
    if (!m.client_ip.empty()) out.insert({CounterKind::ip_offdomain_rcpts, m.client_ip});
}

std::string hash_key(const FleetConfig& f, const Counted& c) {
    return f.key_prefix + ":count:" + std::to_string(static_cast<int>(c.first)) + ":" + c.second;
}

// "<number>:<count>,..." (empty: no count in the window).
std::string encode_window(const std::vector<NumberedBucket>& buckets) {
    std::string out;
    for (const auto& b : buckets) {
        if (!out.empty()) out += ',';
        out += std::to_string(b.number) + ":" + std::to_string(b.count);
    }
    return out;
}

bool decode_window(const std::string& text, std::vector<NumberedBucket>& out) {
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t end = std::min(text.find(',', at), text.size());
        unsigned long long number = 0, count = 0;
        int used = 0;
        const std::string part = text.substr(at, end - at);
        if (std::sscanf(part.c_str(), "%llu:%llu%n", &number, &count, &used) != 2 ||
            used != static_cast<int>(part.size()) || count > UINT32_MAX)
            return false;
        out.push_back({number, static_cast<uint32_t>(count)});
        at = end + 1;
    }
    return true;
}

// The MAC binds the window to its hash (kind and key) and its node.
std::string mac_of(const FleetKey& key, const std::string& hash, const std::string& node, const std::string& window) {
    return key.mac_hex(hash + "\n" + node + "\n" + window);
}

void log(const std::string& line) { agent_log("sync", {line}); }

int64_t monotonic_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

CountExchange::CountExchange(const Config& cfg, const FleetKey& key) : cfg_(cfg), key_(key) {}
CountExchange::~CountExchange() = default;

bool CountExchange::open_files() {
    if (counters_ && (counters_->replaced() || !counters_->usable())) counters_.reset();
    if (log_ && !log_->usable()) log_.reset();
    std::string error;
    if (!counters_) counters_ = Counters::open(cfg_.store_path, false, 0, error);
    if (counters_ && !log_) {
        log_ = CountLog::open(cfg_.store_path, false, error);
        // What the ring still holds is shared again: the windows are sent
        // whole, so sending one twice changes nothing.
        if (log_) log_pos_ = log_->head() > log_->slots() ? log_->head() - log_->slots() : 0;
    }
    if (counters_ && log_) return said_missing_ = false, true;
    if (!said_missing_) log("fleet counters: " + error + " (run mailsuspend init); rate limits count on this node only");
    said_missing_ = true;
    return false;
}

bool CountExchange::step(Redis& redis, std::string& error_r) {
    const int64_t now_ms = monotonic_ms();
    if (now_ms - last_ms_ < kExchangeMs) return true;
    last_ms_ = now_ms;
    if (!open_files()) return true;
    const int64_t now = std::time(nullptr);
    return share(redis, now, error_r) && take_in(redis, now, error_r);
}

bool CountExchange::share(Redis& redis, int64_t now, std::string& error_r) {
    std::vector<CountedMessage> messages;
    uint64_t lost = 0;
    const uint64_t next = log_->read(log_pos_, unfinished_at_ == log_pos_, messages, lost);
    if (lost) log("fleet counters: " + std::to_string(lost) + " counted message(s) not shared (the count log ran "
                  "over): their senders are shared again at their next message");
    std::set<Counted> counted;
    for (const auto& m : messages) add_counted(m, counted);
    std::vector<Counted> todo(counted.begin(), counted.end());
    for (std::size_t from = 0; from < todo.size(); from += kKeysPerScript) {
        const std::size_t to = std::min(todo.size(), from + kKeysPerScript);
        std::vector<std::string> keys, values;
        std::string announcement;
        for (std::size_t i = from; i < to; ++i) {
            const Counted& c = todo[i];
            const std::string hash = hash_key(cfg_.fleet, c);
            const std::string window = encode_window(counters_->buckets(c.second, c.first, now));
            keys.push_back(hash);
            values.push_back(window + " " + mac_of(key_, hash, cfg_.fleet.node_id, window));
            values.push_back(std::to_string(window_length(c.first) + bucket_width(c.first)));
            announcement += std::to_string(static_cast<int>(c.first)) + " " + c.second + "\n";
        }
        std::vector<std::string> args{"EVAL", kShareScript, std::to_string(keys.size() + 1)};
        args.insert(args.end(), keys.begin(), keys.end());
        args.push_back(cfg_.fleet.key_prefix + ":counted");
        args.push_back(cfg_.fleet.node_id);
        args.push_back(announcement);
        args.insert(args.end(), values.begin(), values.end());
        args.push_back(kAnnouncements);
        Reply ignored;
        if (!redis.run(args, ignored, error_r)) return false;
    }
    unfinished_at_ = next < log_->head() ? next : UINT64_MAX;
    log_pos_ = next;
    return true;
}

namespace {

// The keys other nodes announced in one XREAD reply.
void announced(const Reply& reply, const std::string& self, std::set<Counted>& out, std::string& last_id) {
    for (const Reply& entry : reply.elements.at(0).elements.at(1).elements) {
        last_id = entry.elements.at(0).str;
        const Reply* node = entry.elements.at(1).field("node");
        const Reply* keys = entry.elements.at(1).field("keys");
        if (!node || !keys || node->str == self) continue;
        std::size_t at = 0;
        while (at < keys->str.size()) {
            const std::size_t end = std::min(keys->str.find('\n', at), keys->str.size());
            const std::size_t space = keys->str.find(' ', at);
            if (space < end) {
                const int kind = std::atoi(keys->str.substr(at, space - at).c_str());
                if (shared_kind(kind)) out.insert({static_cast<CounterKind>(kind), keys->str.substr(space + 1, end - space - 1)});
            }
            at = end + 1;
        }
    }
}

}  // namespace

bool CountExchange::take_in(Redis& redis, int64_t now, std::string& error_r) {
    std::set<Counted> counted;
    for (bool more = true; more;) {
        Reply reply;
        if (!redis.run({"XREAD", "COUNT", kReadCount, "STREAMS", cfg_.fleet.key_prefix + ":counted", counted_id_},
                       reply, error_r))
            return false;
        if (reply.type != Reply::Type::array || reply.elements.empty()) break;
        const std::size_t got = reply.elements.at(0).elements.at(1).elements.size();
        announced(reply, cfg_.fleet.node_id, counted, counted_id_);
        more = got == static_cast<std::size_t>(std::atoi(kReadCount));
    }
    std::vector<Counted> todo(counted.begin(), counted.end());
    for (std::size_t from = 0; from < todo.size(); from += kKeysPerScript) {
        const std::size_t to = std::min(todo.size(), from + kKeysPerScript);
        std::vector<std::string> args{"EVAL", kFetchScript, std::to_string(to - from)};
        for (std::size_t i = from; i < to; ++i) args.push_back(hash_key(cfg_.fleet, todo[i]));
        Reply reply;
        if (!redis.run(args, reply, error_r)) return false;
        for (std::size_t i = from; i < to && i - from < reply.elements.size(); ++i)
            take_in_one(todo[i], args[3 + i - from], reply.elements[i - from], now);
    }
    return true;
}

void CountExchange::take_in_one(const Counted& c, const std::string& hash, const Reply& fields, int64_t now) {
    std::map<uint64_t, uint64_t> sum;
    for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
        const std::string& node = fields.elements[i].str;
        const std::string& value = fields.elements[i + 1].str;
        if (node == cfg_.fleet.node_id) continue;
        const std::size_t space = value.rfind(' ');
        std::vector<NumberedBucket> window;
        if (space == std::string::npos || value.substr(space + 1) != mac_of(key_, hash, node, value.substr(0, space)) ||
            !decode_window(value.substr(0, space), window)) {
            log("fleet counters: refused the count of node '" + node.substr(0, 64) + "' for " + hash.substr(0, 300) +
                ": bad signature or malformed");
            continue;
        }
        for (const auto& b : window) sum[b.number] += b.count;
    }
    std::vector<NumberedBucket> buckets;
    for (const auto& [number, count] : sum)
        buckets.push_back({number, static_cast<uint32_t>(std::min<uint64_t>(count, UINT32_MAX))});
    if (!counters_->set_buckets(c.second, fleet_share(c.first), buckets, now))
        log("fleet counters: no room for " + c.second + " in the counter table (raise store.counter_capacity)");
}

}  // namespace mailsuspend::cli
