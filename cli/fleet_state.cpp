#include "fleet_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

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
    std::string error;
    auto cfg = load_config(path, error);
    if (cfg && !cfg->fleet.enabled) error = path + " has no fleet group: this node is on its own";
    if (cfg && cfg->fleet.enabled) return cfg;
    std::cerr << "mailsuspend: " << error << "\n";
    code = static_cast<int>(Exit::bad_input);
    return std::nullopt;
}

int compare_stream_ids(const std::string& a, const std::string& b) {
    const auto x = parse_id(a), y = parse_id(b);
    return x < y ? -1 : x > y ? 1 : 0;
}

int64_t stream_id_millis(const std::string& id) { return static_cast<int64_t>(parse_id(id).first); }

// The file: "<stream id> <published seq> <epoch>\n" ("-" for none).
bool load_fleet_position(const Config& cfg, FleetPosition& p, std::string& error_r) {
    p = FleetPosition{};
    std::ifstream in(position_path(cfg));
    if (!in) {
        if (errno == ENOENT) return true;  // a new node
        return error_r = position_path(cfg) + ": " + std::strerror(errno), false;
    }
    std::string id, epoch;
    unsigned long long seq = 0;
    if (!(in >> id >> seq >> epoch))
        return error_r = position_path(cfg) + ": damaged (delete it to resynchronise)", false;
    p.stream_id = id == "-" ? "" : id;
    p.published_seq = seq;
    p.epoch = epoch == "-" ? "" : epoch;
    return true;
}

bool save_fleet_position(const Config& cfg, const FleetPosition& p, std::string& error_r) {
    const std::string path = position_path(cfg), tmp = path + ".new";
    const std::string text = (p.stream_id.empty() ? "-" : p.stream_id) + " " + std::to_string(p.published_seq) + " " +
                             (p.epoch.empty() ? "-" : p.epoch) + "\n";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return error_r = tmp + ": " + std::strerror(errno), false;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fdatasync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
        return error_r = path + ": " + std::strerror(ok ? errno : err), false;
    // The rename itself must survive a power loss too.
    const int dir = ::open(cfg.store_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
    return true;
}

bool unpublished_changes(StoreReader& reader, const std::string& node, uint64_t after, uint64_t upto,
                         std::vector<TargetRecord>& out) {
    out.clear();
    return reader.for_each([&](const TargetRecord& r) {
        if (r.origin == node && r.seq > after && r.seq <= upto) out.push_back(r);
    });
}

}  // namespace mailsuspend::cli
