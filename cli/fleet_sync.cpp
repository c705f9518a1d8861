// The fleet agent (issue 15): publishes this node's changes to Redis and
// applies everyone else's.  docs/design.md, "Fleet", has the whole picture.
//
//  - Publish: the store is the durable capture (fleet_state.hpp).  Each of
//    this node's records past the published sequence number goes out through
//    one Lua script that appends it to <prefix>:changes and sets it in the
//    snapshot <prefix>:state atomically, only when it is newer than the
//    snapshot's entry; then the published number is saved.
//  - Apply: entries of the stream after the saved position, verified, through
//    Session::apply_fleet_change (last writer wins), then the position is
//    saved.  A crash in between applies them again: nothing changes.
//  - Resync (a new node, a trimmed position, a stream Redis lost): the
//    stream's last id first, then the snapshot, then the stream from that id.
//  - Failover: a dropped connection or a demoted server (READONLY...) makes
//    the agent ask the sentinels again; on a master with a new replication
//    history it publishes its changes again and re-checks its position.
#include "fleet_sync.hpp"

#include <dirent.h>
#include <signal.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <thread>

#include "agent.hpp"
#include "fleet_change.hpp"
#include "fleet_counters.hpp"
#include "fleet_redis.hpp"
#include "fleet_state.hpp"
#include "operations.hpp"
#include "outbox.hpp"
#include "store.hpp"

namespace mailsuspend::cli {
namespace {

constexpr int kBatch = 500;           // stream entries applied per store transaction
// Snapshot keys (HSCAN COUNT) applied per store transaction in a resync: a
// writer open (journal read) and a journal sync per 5000, not per 500 (1 M
// targets: 200 transactions, each holding the writer lock well under a second).
constexpr int kResyncBatch = 5000;
constexpr std::size_t kPipeline = 1000;  // publish scripts sent before their replies are read
constexpr int kBlockMs = 250;         // XREAD BLOCK: how soon a local change is published when idle
constexpr int64_t kHeartbeatMs = 1000;
constexpr int64_t kResyncHoldMs = 1000;  // a resync keeps one writer this long at most
constexpr int64_t kApplyGapMs = 50;      // between two batches follow() applies
constexpr int64_t kWriterWaitMs = 10'000;  // for the store's lock, applying other nodes' changes

// KEYS: stream, snapshot; ARGV: target, signed change, the stream's length
// (fleet.stream_length, trimmed roughly).  Newer: by the 20-digit stamp, then
// the origin (the same rule as fleet_newer).
const char* const kPublishScript = R"lua(
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local stamp, origin = string.match(ARGV[2], '^(%d+) (%S+)')
  local cstamp, corigin = string.match(cur, '^(%d+) (%S+)')
  if cstamp and (cstamp > stamp or (cstamp == stamp and corigin >= origin)) then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'target', ARGV[1], 'change', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
)lua";

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void log(const std::vector<std::string>& lines) { agent_log("sync", lines); }
void log(const std::string& line) { log(std::vector<std::string>{line}); }

struct Keys {
    std::string stream, state, nodes, epoch, prefix;
    explicit Keys(const FleetConfig& f)
        : stream(f.key_prefix + ":changes"), state(f.key_prefix + ":state"), nodes(f.key_prefix + ":nodes"),
          epoch(f.key_prefix + ":epoch"), prefix(f.key_prefix) {}
    std::string node(const std::string& id) const { return prefix + ":node:" + id; }
};

// A change read from Redis: where it was (for the log) and its fields.
struct Incoming {
    std::string id, target, change;
};

class Agent {
public:
    Agent(const Config& cfg, FleetKey key)
        : cfg_(cfg), f_(cfg.fleet), keys_(cfg.fleet), key_(std::move(key)), counts_(cfg, key_) {}
    bool start(std::string& error_r) { return load_fleet_position(cfg_, pos_, error_r); }
    // One round on a connection: false with error_r when Redis or the store failed.
    bool step(Redis& redis, std::string& error_r);
    void connected() { checked_ = false; }

private:
    bool check_position(Redis& redis, std::string& error_r);
    bool check_history(Redis& redis, std::string& error_r);
    bool redis_epoch(Redis& redis, std::string& epoch, std::string& error_r);
    bool position_gone(Redis& redis, bool& gone, std::string& last, std::string& error_r);
    bool resync(Redis& redis, const std::string& last_id, std::string& error_r);
    bool apply_outbox(std::string& error_r);
    bool publish(Redis& redis, std::string& error_r);
    bool follow(Redis& redis, std::string& error_r);
    // held: a writer the caller keeps open across batches (a resync), or
    // nullptr: one is opened for this batch.
    bool apply(const std::vector<Incoming>& batch, std::string& error_r, std::size_t* applied_r = nullptr,
               std::unique_ptr<StoreWriter>* held = nullptr);
    bool audit_resync(std::size_t applied, const std::string& why, std::string& error_r);
    std::unique_ptr<StoreWriter> open_writer(int64_t wait_ms, std::string& error_r, bool* busy = nullptr);
    void drain_outbox(StoreWriter& writer);
    bool heartbeat(Redis& redis, std::string& error_r);
    StoreReader* reader(std::string& error_r);

    const Config& cfg_;
    const FleetConfig& f_;
    Keys keys_;
    FleetKey key_;
    CountExchange counts_;  // fleet.counters = "fleet" only
    FleetPosition pos_;
    ArenaMark arena_mark_;  // where the last scan for unpublished changes ended
    std::string resync_why_;
    int64_t last_apply_ms_ = 0;  // when follow() last applied a batch
    const std::string stream_length_ = std::to_string(f_.stream_length);
    bool checked_ = false;  // the position was checked against this connection's stream
    int64_t last_heartbeat_ = 0;
    std::unique_ptr<StoreReader> reader_;
};

StoreReader* Agent::reader(std::string& error_r) {
    if (reader_ && reader_->replaced()) reader_.reset();
    if (!reader_) reader_ = StoreReader::open(cfg_.store_path, error_r);
    return reader_.get();
}

bool Agent::step(Redis& redis, std::string& error_r) {
    if (!checked_ && !check_position(redis, error_r)) return false;
    checked_ = true;
    return apply_outbox(error_r) && publish(redis, error_r) && follow(redis, error_r) && heartbeat(redis, error_r) &&
           (f_.counters != FleetConfig::Counters::fleet || counts_.step(redis, error_r));
}

// Whether Exim (or Dovecot's auth) handed a change to <store>/outbox: one
// readdir of a directory that is empty nearly always.
bool outbox_pending(const Config& cfg) {
    DIR* d = ::opendir(outbox_dir(cfg).c_str());
    if (!d) return false;
    bool pending = false;
    while (const dirent* de = ::readdir(d)) {
        const std::string_view name = de->d_name;
        if (name.starts_with(kSuspendPrefix) || name.starts_with(kExtendPrefix)) {
            pending = true;
            break;
        }
    }
    ::closedir(d);
    return pending;
}

// A rate suspension Exim made while the store's lock was taken waits in the
// outbox for the next writer; without this the agent would be that writer
// only when a remote change came, and the suspension would not reach the
// other nodes until then (issue 15: "Exim's automatic suspensions").  Once
// applied it is a local change like any other, and publish() sends it.  The
// lock still taken: tried again on the next round, the agent never waits.
bool Agent::apply_outbox(std::string& error_r) {
    if (!outbox_pending(cfg_)) return true;
    bool busy = false;
    auto writer = open_writer(0, error_r, &busy);
    if (!writer) return busy ? (error_r.clear(), true) : false;
    drain_outbox(*writer);
    return true;
}

// The store's writer, waiting wait_ms at most for the lock (busy: it was
// taken all along); nullptr with "store: ..." in error_r.
std::unique_ptr<StoreWriter> Agent::open_writer(int64_t wait_ms, std::string& error_r, bool* busy) {
    LockWait wait;
    wait.timeout_ms = wait_ms;
    auto writer = StoreWriter::open(cfg_, false, error_r, &wait);
    if (busy) *busy = wait.busy;
    if (!writer) error_r = "store: " + error_r;
    return writer;
}

// Whatever Exim or Dovecot's auth left in the outbox, made by this writer.
void Agent::drain_outbox(StoreWriter& writer) {
    std::vector<std::string> warnings, done;
    outbox_apply(cfg_, writer, warnings, &done);
    for (auto& w : warnings) done.push_back("warning: " + w);
    log(done);
}

// This Redis's data set: <prefix>:epoch, set once by the first agent to ask.
bool Agent::redis_epoch(Redis& redis, std::string& epoch, std::string& error_r) {
    unsigned char random[16];
    randombytes_buf(random, sizeof random);
    char hex[sizeof random * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, random, sizeof random);
    Reply reply;
    if (!redis.run({"SET", keys_.epoch, hex, "NX"}, reply, error_r) || !redis.run({"GET", keys_.epoch}, reply, error_r))
        return false;
    epoch = reply.str;
    return true;
}

// Where the stream stands for this position: lost when the stream is behind
// it (Redis lost writes), or when the position's own entry is gone while the
// stream went on past it: trimmed, or a failover's new master never had it
// and, from its own clock, may have appended entries with ids before it.
bool Agent::position_gone(Redis& redis, bool& lost, std::string& last, std::string& error_r) {
    Reply info;
    std::string why;
    last = "0-0";
    if (redis.run({"XINFO", "STREAM", keys_.stream}, info, why)) {
        if (const Reply* r = info.field("last-generated-id")) last = r->str;
    } else if (redis.broken()) {
        return error_r = why, false;
    }  // else: no stream yet
    lost = compare_stream_ids(pos_.stream_id, last) > 0;
    if (pos_.stream_id.empty() || compare_stream_ids(pos_.stream_id, last) >= 0) return true;
    Reply own;
    if (!redis.run({"XRANGE", keys_.stream, pos_.stream_id, pos_.stream_id}, own, error_r)) return false;
    lost = own.elements.empty();
    return true;
}

// The master's replication id: a failover or a restart starts a new one.
bool master_history(Redis& redis, std::string& id, std::string& error_r) {
    Reply info;
    if (!redis.run({"INFO", "replication"}, info, error_r)) return false;
    const std::string field = "master_replid:";
    const auto at = info.str.find(field);
    if (at == std::string::npos) return error_r = "INFO replication: no master_replid", false;
    const auto from = at + field.size();
    id = info.str.substr(from, info.str.find_first_of("\r\n", from) - from);
    return true;
}

// A new history (a failover, a restart) may have lost the last changes this
// node published, acknowledged by the old master but never replicated: all
// of them go out again (the Lua script skips those the snapshot still has).
bool Agent::check_history(Redis& redis, std::string& error_r) {
    std::string history;
    if (!master_history(redis, history, error_r)) return false;
    if (history == pos_.history) return true;
    if (!pos_.history.empty())
        log("Redis at " + redis.address() + " has a new history (a failover or a restart): " +
            "publishing this node's changes again and checking the position");
    pos_.history = history;
    pos_.published_seq = 0;
    return save_fleet_position(cfg_, pos_, error_r);
}

// Resynchronises a new node, a node whose position was trimmed or is past
// the stream's end, and every node after Redis lost its data (its epoch
// changed: a restart without persistence).
bool Agent::check_position(Redis& redis, std::string& error_r) {
    std::string epoch, last;
    bool gone = false;
    if (!check_history(redis, error_r) || !redis_epoch(redis, epoch, error_r) ||
        !position_gone(redis, gone, last, error_r))
        return false;
    std::string why;
    if (pos_.stream_id.empty()) why = "new node";
    else if (epoch != pos_.epoch) why = "Redis lost its data (a new epoch)";
    else if (gone) why = "position " + pos_.stream_id + " was trimmed from the stream or lost";
    else return true;
    log(why + ": resynchronising from the snapshot");
    pos_.epoch = epoch;
    resync_why_ = why;
    return resync(redis, last, error_r);
}

// The snapshot, then the stream from last_id (taken before the scan: a
// change published meanwhile is in both, and applying it twice is harmless).
// This node's own changes are published again after (the Lua script skips
// those the snapshot has): Redis may have lost them.
bool Agent::resync(Redis& redis, const std::string& last_id, std::string& error_r) {
    pos_.published_seq = 0;
    std::string cursor = "0";
    std::size_t scanned = 0, applied = 0;
    // One writer for a second's worth of batches: opening one re-reads the
    // journal (up to 8 MiB), which per batch was a sixth of a resync's CPU;
    // let go each second so that other writers (the CLI, Exim) get their turn.
    std::unique_ptr<StoreWriter> writer;
    int64_t opened_ms = 0;
    do {
        Reply page;
        if (!redis.run({"HSCAN", keys_.state, cursor, "COUNT", std::to_string(kResyncBatch)}, page, error_r))
            return false;
        if (page.elements.size() != 2) return error_r = "HSCAN: unexpected reply", false;
        cursor = page.elements[0].str;
        std::vector<Incoming> batch;
        const auto& kv = page.elements[1].elements;
        for (std::size_t i = 0; i + 1 < kv.size(); i += 2)
            batch.push_back({"snapshot", kv[i].str, kv[i + 1].str});
        if (writer && wall_ms() - opened_ms > kResyncHoldMs) writer.reset();
        if (!writer) opened_ms = wall_ms();
        if (!apply(batch, error_r, &applied, &writer)) return false;
        scanned += batch.size();
    } while (cursor != "0");
    writer.reset();
    if (!audit_resync(applied, resync_why_, error_r)) return false;
    pos_.stream_id = last_id;
    if (!save_fleet_position(cfg_, pos_, error_r)) return false;
    log("resynchronised " + std::to_string(scanned) + " target(s) from the snapshot (" + std::to_string(applied) +
        " changed here); following from " + last_id);
    return true;
}

// One audit line for a whole resync: a new node would otherwise write one
// per target of the fleet (a million lines for a million targets, each sent
// on by the alerts agent).  Each change is still journaled.
bool Agent::audit_resync(std::size_t applied, const std::string& why, std::string& error_r) {
    auto writer = open_writer(kWriterWaitMs, error_r);
    if (!writer) return false;
    Session session(cfg_, *writer, Actor{0, "fleet"}, std::time(nullptr));
    session.record_event("", "fleet-resync", {{"applied", applied}, {"why", why}});
    std::vector<std::string> warnings;
    if (Outcome o = session.commit(warnings); !o.ok()) return error_r = o.message, false;
    for (const auto& w : warnings) log("warning: " + w);
    return true;
}

bool Agent::publish(Redis& redis, std::string& error_r) {
    StoreReader* r = reader(error_r);
    if (!r) return error_r = "store: " + error_r, false;
    const uint64_t upto = r->stats().seq;
    if (upto <= pos_.published_seq) return true;
    std::vector<TargetRecord> changes;
    if (!unpublished_changes(*r, f_.node_id, pos_.published_seq, upto, changes, &arena_mark_))
        return error_r = "store: " + r->last_error(), false;
    // Pipelined, kPipeline scripts a round trip: a bulk change (a batch, a
    // resync) goes out without one network round trip per target.
    std::vector<std::vector<std::string>> scripts;
    for (std::size_t i = 0; i < changes.size(); ++i) {
        const TargetRecord& c = changes[i];
        scripts.push_back(
            {"EVAL", kPublishScript, "2", keys_.stream, keys_.state, c.key, encode_fleet_change(c, key_), stream_length_});
        if (scripts.size() < kPipeline && i + 1 < changes.size()) continue;
        if (!redis.run_pipelined(scripts, error_r)) return false;
        scripts.clear();
    }
    pos_.published_seq = upto;
    return save_fleet_position(cfg_, pos_, error_r);
}

// The stream after the position.  The stream is trimmed from the front
// (fleet.stream_length): with the read goes a look for the position's own
// entry, answered after the read, and when it is gone entries after it may
// have gone unread: the next round resynchronises (check_position).
bool Agent::follow(Redis& redis, std::string& error_r) {
    // Under a steady flow of changes, one store transaction per kApplyGapMs
    // at most: the changes that come meanwhile wait and go in together (each
    // transaction opens the writer and syncs the journal and audit log).
    const int64_t since = wall_ms() - last_apply_ms_;
    if (since < kApplyGapMs) sleep_unless_stopped(kApplyGapMs - since);
    const std::string from = pos_.stream_id.empty() ? "0-0" : pos_.stream_id;
    std::vector<std::vector<std::string>> commands{
        {"XREAD", "COUNT", std::to_string(kBatch), "BLOCK", std::to_string(kBlockMs), "STREAMS", keys_.stream, from}};
    if (from != "0-0") commands.push_back({"XRANGE", keys_.stream, from, from});
    std::vector<Reply> replies;
    if (!redis.run_pipelined(commands, error_r, &replies)) return false;
    const Reply& reply = replies[0];
    if (reply.type != Reply::Type::array || reply.elements.empty()) return true;  // nothing new
    if (replies.size() > 1 && replies[1].elements.empty()) {
        log("position " + from + " was trimmed from the stream while following");
        checked_ = false;
        return true;
    }
    std::vector<Incoming> batch;
    std::string last = from;
    for (const Reply& entry : reply.elements[0].elements.at(1).elements) {
        last = entry.elements.at(0).str;
        const Reply& fields = entry.elements.at(1);
        const Reply* target = fields.field("target");
        const Reply* change = fields.field("change");
        batch.push_back({last, target ? target->str : "", change ? change->str : ""});
    }
    std::size_t applied = 0;
    if (!apply(batch, error_r, &applied)) return false;
    if (applied) last_apply_ms_ = wall_ms();  // not for this node's own changes coming back
    pos_.stream_id = last;
    return save_fleet_position(cfg_, pos_, error_r);
}

// Verifies each change (a forged one is logged and skipped, never applied)
// and applies the rest in one writer session per origin node: one commit
// (one journal and audit sync) per batch and origin, not one per change.
bool Agent::apply(const std::vector<Incoming>& batch, std::string& error_r, std::size_t* applied_r,
                  std::unique_ptr<StoreWriter>* held) {
    std::map<std::string, std::vector<TargetRecord>> by_origin;
    for (const auto& in : batch) {
        TargetRecord r;
        std::string why;
        if (!decode_fleet_change(in.change, in.target, key_, r, why)) {
            log("refused change " + in.id + " for '" + in.target.substr(0, 255) + "': " + why);
            continue;
        }
        if (r.origin == f_.node_id && in.id != "snapshot") continue;  // our own, already in the store
        by_origin[r.origin].push_back(std::move(r));
    }
    if (by_origin.empty()) return true;
    std::unique_ptr<StoreWriter> own;
    std::unique_ptr<StoreWriter>& writer = held ? *held : own;
    std::vector<std::string> warnings;
    if (!writer) {
        writer = open_writer(kWriterWaitMs, error_r);
        if (!writer) return false;
        drain_outbox(*writer);
    }
    // A resync logs how many it applied (resync()), not a line for each.
    const bool from_snapshot = batch.front().id == "snapshot";
    for (const auto& [origin, states] : by_origin) {
        Session session(cfg_, *writer, Actor{0, "fleet:" + origin}, std::time(nullptr));
        std::vector<std::string> lines;
        for (const auto& s : states) {
            bool applied = false;
            if (Outcome o = session.apply_fleet_change(s, applied, !from_snapshot); !o.ok())
                return error_r = o.message, false;
            if (applied && applied_r) ++*applied_r;
            if (applied && !from_snapshot) lines.push_back("applied " + s.key + " from " + origin);
        }
        if (Outcome o = session.commit(warnings); !o.ok()) return error_r = o.message, false;
        log(lines);
    }
    for (const auto& w : warnings) log("warning: " + w);
    return true;
}

bool Agent::heartbeat(Redis& redis, std::string& error_r) {
    const int64_t now = wall_ms();
    if (now - last_heartbeat_ < kHeartbeatMs) return true;
    last_heartbeat_ = now;
    Reply ignored;
    return redis.run({"HSET", keys_.node(f_.node_id), "position", pos_.stream_id.empty() ? "0-0" : pos_.stream_id,
                      "time", std::to_string(now / 1000), "published_seq", std::to_string(pos_.published_seq)},
                     ignored, error_r) &&
           redis.run({"SADD", keys_.nodes, f_.node_id}, ignored, error_r);
}

// Connects with backoff (0.5 s doubling to 10 s), saying once per outage
// why Redis cannot be reached; local writes go on meanwhile.
std::unique_ptr<Redis> connect_with_backoff(const FleetConfig& f) {
    int64_t backoff = 500;
    std::string said;
    while (!stop_requested()) {
        std::string error;
        if (auto redis = Redis::connect(f, error)) {
            log("connected to Redis at " + redis->address() + " as node " + f.node_id);
            return redis;
        }
        if (error != said) log("cannot reach Redis (" + error + "); retrying, local changes wait in the store");
        said = error;
        sleep_unless_stopped(backoff);
        backoff = std::min<int64_t>(backoff * 2, 10'000);
    }
    return nullptr;
}

}  // namespace

int cmd_sync(const Options& o) {
    int code = 0;
    auto cfg = load_fleet_config(o.config, code);
    if (!cfg) return code;
    std::string error;
    FleetKey key;
    if (!load_fleet_key(cfg->fleet.signing_key_file, key, error))
        return std::cerr << "mailsuspend: " << error << "\n", static_cast<int>(Exit::failure);
    Agent agent(*cfg, std::move(key));
    if (!agent.start(error)) return std::cerr << "mailsuspend: " << error << "\n", static_cast<int>(Exit::failure);
    install_stop_signals();
    while (!stop_requested()) {
        auto redis = connect_with_backoff(cfg->fleet);
        if (!redis) break;
        agent.connected();
        int64_t backoff = 500;
        while (!stop_requested()) {
            if (agent.step(*redis, error)) {
                backoff = 500;
                continue;
            }
            log(error);
            if (redis->broken()) break;  // lost, or demoted by a failover: ask the sentinels again
            sleep_unless_stopped(backoff);  // the store busy, a script refused: try again
            backoff = std::min<int64_t>(backoff * 2, 10'000);
        }
    }
    log("stopped");
    return 0;
}

}  // namespace mailsuspend::cli
