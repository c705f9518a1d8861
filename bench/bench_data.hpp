// Benchmark data sets: a store holding N suspended accounts, built once with
// StoreWriter::commit in large batches and kept on disk for later runs, plus
// the same accounts in an in-process std::unordered_map (the baseline).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "store.hpp"

namespace bench {

// Key of account i: "u<i>@d<i % 5000>.example" (stored for i < N; i >= N misses).
std::string account_key(uint64_t i);

// Where data sets live: $MAILSUSPEND_BENCH_DIR or /var/tmp/mailsuspend-bench.
std::string bench_root();

struct StoreData {
    uint64_t accounts = 0;
    std::string dir;                 // the store directory (store.path)
    double build_seconds = 0;        // 0 when reused from an earlier run
    uint64_t loaded_file_bytes = 0;  // file size right after the bulk load, before compaction
    mailsuspend::StoreStats stats;   // after compaction (rebuild at capacity N)
};

// Opens the data set for n accounts under bench_root(), building it when it
// is missing or unreadable: bulk load by commit, then rebuild(n) to compact
// (what "mailsuspend rebuild --capacity N" does).  Aborts on failure.
const StoreData& store_data(uint64_t n);

// A mailsuspend.conf pointing at the data set (written next to it).
std::string config_file(const StoreData& d);

// 1 Mi random keys: hits (stored accounts) or misses (never stored), in a
// random order; the same seed gives the same keys.
const std::vector<std::string>& lookup_keys(uint64_t n, bool hits);

using Baseline = std::unordered_map<std::string, mailsuspend::HotView>;
struct BaselineData {
    Baseline map;
    double heap_bytes_per_account = 0;  // malloc'd bytes / accounts (mallinfo2)
};
const BaselineData& baseline_data(uint64_t n);
// Frees the baseline of n (the 10 M map holds about 1.5 GB).
void drop_baseline(uint64_t n);

}  // namespace bench
