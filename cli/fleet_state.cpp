#include "fleet_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "agent.hpp"
#include "outcome.hpp"
#include "store.hpp"

namespace mailsuspend::cli {
namespace {

std::string position_path(const Config& cfg) { return cfg.store_path + "/fleet-position"; }

std::pair<uint64_t, uint64_t> parse_id(const std::string& id) {
    unsigned long long ms = 0, n = 0;
    if (std::sscanf(id.c_str(), "%llu-%llu", &ms, &n) < 1) return {0, 0};
    return {ms, n};
}

}  // namespace

std::optional<Config> load_fleet_config(const std::string& path, int& code) {
    return load_agent_config(
        path, [](const Config& c) { return c.fleet.enabled; }, "has no fleet group: this node is on its own", code);
}

int compare_stream_ids(const std::string& a, const std::string& b) {
    const auto x = parse_id(a), y = parse_id(b);
    return x < y ? -1 : x > y ? 1 : 0;
}

int64_t stream_id_millis(const std::string& id) { return static_cast<int64_t>(parse_id(id).first); }

// The file: "<stream id> <published seq> <epoch> <history>\n" ("-" for none;
// a file written before history existed has three fields).
bool load_fleet_position(const Config& cfg, FleetPosition& p, std::string& error_r) {
    p = FleetPosition{};
    std::ifstream in(position_path(cfg));
    if (!in) {
        if (errno == ENOENT) return true;  // a new node
        return error_r = position_path(cfg) + ": " + std::strerror(errno), false;
    }
    std::string id, epoch, history;
    unsigned long long seq = 0;
    if (!(in >> id >> seq >> epoch))
        return error_r = position_path(cfg) + ": damaged (delete it to resynchronise)", false;
    in >> history;
    p.stream_id = id == "-" ? "" : id;
    p.published_seq = seq;
    p.epoch = epoch == "-" ? "" : epoch;
    p.history = history == "-" ? "" : history;
    return true;
}

bool save_fleet_position(const Config& cfg, const FleetPosition& p, std::string& error_r) {
    const std::string text = (p.stream_id.empty() ? "-" : p.stream_id) + " " + std::to_string(p.published_seq) + " " +
                             (p.epoch.empty() ? "-" : p.epoch) + " " + (p.history.empty() ? "-" : p.history) + "\n";
    return replace_file_durably(cfg.store_path, "fleet-position", text, error_r);
}

bool unpublished_changes(StoreReader& reader, const std::string& node, uint64_t after, uint64_t upto,
                         std::vector<TargetRecord>& out, ArenaMark* mark) {
    // The scan maps the newest generation first: a mark of another one
    // means nothing there, so that scan is done again from the start.
    for (int attempt = 0;; ++attempt) {
        out.clear();
        const uint64_t generation = reader.stats().generation;
        const uint64_t from = mark && after != 0 && mark->generation == generation && attempt == 0 ? mark->offset : 0;
        // The next mark: past every record of (.., upto], before every record
        // past upto (committed since upto was read, or copied by a growth).
        uint64_t end = from, first_later = UINT64_MAX;
        if (!reader.for_each_from(from, [&](const TargetRecord& r, uint64_t start, uint64_t stop) {
                if (r.seq > upto) {
                    first_later = std::min(first_later, start);
                    return;
                }
                end = std::max(end, stop);
                if (r.origin == node && r.seq > after) out.push_back(r);
            }))
            return false;
        const uint64_t scanned = reader.stats().generation;
        if (from == 0 || scanned == generation) {
            if (mark) *mark = {scanned, std::min(end, first_later)};
            return true;
        }
    }
}

}  // namespace mailsuspend::cli
