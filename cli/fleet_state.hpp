// What the fleet agent keeps next to the store (<store.path>/fleet-*), and
// what it and `fleet-status` read from the store: the local changes not yet
// published.  Stream ids ("<ms>-<n>") compare as number pairs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "model.hpp"

namespace mailsuspend {
class StoreReader;
}

namespace mailsuspend::cli {

// The config at path when it has a fleet group; else nullopt with the exit
// code in code (2: a bad file, or no fleet group), the reason on stderr.
std::optional<Config> load_fleet_config(const std::string& path, int& code);

// The stream position applied ("" for a node that never synchronised) and
// the store's change sequence number up to which local changes are published.
// epoch: the value of <prefix>:epoch when the position was taken; another
// value means Redis lost its data since (a restart without persistence).
// history: the master's replication id (INFO master_replid) when this node
// last published; a failover or a restart starts a new one, and either can
// lose the last writes Redis acknowledged.
struct FleetPosition {
    std::string stream_id;
    uint64_t published_seq = 0;
    std::string epoch;
    std::string history;
};

bool load_fleet_position(const Config& cfg, FleetPosition& p, std::string& error_r);
// Written through a temporary file, fsync and rename: a crash leaves the old
// position or the new one, and an old one only means changes applied again.
bool save_fleet_position(const Config& cfg, const FleetPosition& p, std::string& error_r);

// -1, 0, 1 as stream id a is before, equal to, after b ("" and "0-0" first).
int compare_stream_ids(const std::string& a, const std::string& b);
// The milliseconds part of a stream id.
int64_t stream_id_millis(const std::string& id);

// This node's changes in the store with a sequence number in (after, upto]:
// a change is captured by the store itself (journaled, replayed after a
// crash, kept as a stamped record even when it lifts everything), so the
// records this node stamped and has not published are exactly these.
// false when the store cannot be read.
//
// mark (the agent keeps it between calls): where the last call's scan ended
// in the store's arena.  Blobs are appended in the order of their changes
// within a generation, so a call with the same generation decodes only the
// records written since; a new generation (a growth, a rebuild) or after = 0
// reads everything.  Without a mark, every record is read.
struct ArenaMark {
    uint64_t generation = 0;
    uint64_t offset = 0;
};
bool unpublished_changes(StoreReader& reader, const std::string& node, uint64_t after, uint64_t upto,
                         std::vector<TargetRecord>& out, ArenaMark* mark = nullptr);

}  // namespace mailsuspend::cli
