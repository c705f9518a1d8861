// fuzz_store_seeds OUTDIR: writes the seed corpus of fuzz_store -- real
// stores made by StoreWriter (capacity 16, a few records, their journal),
// cut down to the arena in use so inputs stay small, in the states the
// repair code handles: clean, dirty with the journal not yet applied, a slot
// left mid-write, after a reboot, truncated.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config.hpp"
#include "store.hpp"
#include "store_image.hpp"

using namespace mailsuspend;
namespace layout = mailsuspend::layout;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

TargetRecord record(const std::string& key, int services, const std::string& reason) {
    TargetRecord r;
    r.key = key;
    r.mode = DeliveryMode::queue;
    for (int i = 0; i < kServiceCount; ++i)
        if (services & (1 << i)) {
            r.services[i].suspended = true;
            r.services[i].since = 1700000000;
            r.services[i].expires = i == 0 ? 1900000000 : 0;
            r.services[i].reason = reason;
        }
    r.auto_suspensions = {1700000000};
    return r;
}

// The store with its arena cut to what is used (header fixed to match).
std::string compact(std::string file) {
    const auto used = fuzz::load<uint64_t>(file, offsetof(layout::Header, arena_used));
    const auto arena_offset = fuzz::load<uint64_t>(file, offsetof(layout::Header, arena_offset));
    const uint64_t arena = (used + 7) / 8 * 8;
    file.resize(arena_offset + arena);
    fuzz::store_at<uint64_t>(file, offsetof(layout::Header, arena_size), arena);
    fuzz::store_at<uint64_t>(file, offsetof(layout::Header, file_size), file.size());
    return file;
}

void save(const std::string& out, const std::string& name, const std::string& input) {
    std::ofstream(out + "/" + name, std::ios::binary) << input;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    const std::string out = argv[1];
    std::filesystem::create_directories(out);
    char tmpl[] = "/tmp/fuzz-seeds-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    Config cfg;
    cfg.store_path = dir + "/store";
    cfg.read_group = cfg.write_group = "";
    cfg.store_capacity = 16;
    std::string error;
    {
        auto w = StoreWriter::open(cfg, true, error);
        if (!w) return std::fprintf(stderr, "%s\n", error.c_str()), 1;
        const std::vector<std::vector<TargetRecord>> txs = {
            {record("user@example.com", 0x3, "spam run")},
            {record("@example.com", 0x40, "unpaid"), record("b@example.org", 0x7f, "")},
            {record("x@xn--bcher-kva.example", 0x10, "reason with \xc3\xa9")},
        };
        for (auto tx : txs) {
            std::vector<Change> changes;
            for (auto& r : tx) changes.push_back({r});
            if (!w->commit(changes, error)) return std::fprintf(stderr, "%s\n", error.c_str()), 1;
        }
        std::vector<Change> erase{{TargetRecord{}}};
        erase[0].record.key = "b@example.org";  // a tombstone
        if (!w->commit(erase, error)) return std::fprintf(stderr, "%s\n", error.c_str()), 1;
    }
    const std::string store = compact(slurp(cfg.store_path + "/store"));
    const std::string journal = slurp(cfg.store_path + "/journal");
    using namespace fuzz;
    const uint8_t fix = FixFileSize | FixBootId | FixBlobCrc | FixJournalCrc;
    save(out, "clean", encode(fix, store, journal));
    save(out, "clean-commit", encode(fix | CommitChange, store, journal));
    save(out, "after-reboot", encode(fix & ~FixBootId, store, journal));
    save(out, "no-journal", encode(fix | CommitChange, store, ""));
    save(out, "truncated", encode(FixTruncated, store.substr(0, 3000), journal));
    std::string dirty = store;  // journal not yet applied: replay all of it
    store_at<uint64_t>(dirty, offsetof(layout::Header, seq), 0);
    store_at<uint32_t>(dirty, offsetof(layout::Header, dirty), 1);
    save(out, "dirty-replay", encode(fix | CommitChange, dirty, journal));
    std::string mid = store;  // every used slot left with an odd seqlock
    const auto slots = load<uint64_t>(store, offsetof(layout::Header, slot_count));
    for (uint64_t i = 0; i < slots; ++i) {
        const std::size_t at = layout::kHeaderSize + i * sizeof(layout::Slot);
        const auto w0 = load<uint64_t>(mid, at);
        if (layout::w0_state(w0) == layout::kUsed) store_at<uint64_t>(mid, at, w0 | (uint64_t{1} << 32));
    }
    store_at<uint32_t>(mid, offsetof(layout::Header, dirty), 1);
    save(out, "mid-write", encode(fix | CommitChange, mid, journal));
    std::filesystem::remove_all(dir);
    return 0;
}
