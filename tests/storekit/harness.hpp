// Multi-process store stress harness: writer processes commit self-validating
// records (image.hpp) while reader processes look them up; in crash mode the
// parent SIGKILLs writers at random moments and restarts them.
//
// "Acknowledged" is well defined: a writer raises max_acked[group] only after
// StoreWriter::commit returned, and it raises max_intent[group] before the
// commit starts.  All bookkeeping lives in an anonymous shared mapping the
// parent created before forking, so it survives the writer's death exactly
// as far as the writer got.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace stress {

constexpr int kMaxReaders = 8;
constexpr int kMaxGroups = 4096;
constexpr int kMaxErrors = 8;

struct ReaderStats {
    std::atomic<uint64_t> progress{0};      // calls made; the watchdog watches it
    std::atomic<uint64_t> found{0};
    std::atomic<uint64_t> absent{0};
    std::atomic<uint64_t> unavailable{0};
    std::atomic<uint64_t> max_stall_ns{0};  // longest stretch without a usable answer
    std::atomic<uint64_t> max_call_ns{0};   // longest single lookup/read call
    std::atomic<uint64_t> max_unavailable_streak{0};  // consecutive unavailable calls
    std::atomic<uint64_t> generations_seen{0};         // distinct generations followed
    std::atomic<uint32_t> final_checked{0};            // keys verified in the final pass
    std::atomic<uint32_t> done{0};
};

struct Shared {
    std::atomic<uint32_t> stop_writers{0};
    std::atomic<uint32_t> final_pass{0};     // readers: verify final_version, then exit
    std::atomic<uint64_t> commits_started{0};
    std::atomic<uint64_t> commits_acked{0};
    std::atomic<uint64_t> writer_opens{0};
    std::atomic<uint64_t> rebuilds{0};
    std::atomic<uint64_t> max_open_ns{0};    // slowest StoreWriter::open (repair included)
    std::atomic<uint32_t> error_count{0};
    char errors[kMaxErrors][320]{};
    std::atomic<uint32_t> max_intent[kMaxGroups]{};        // highest version ever attempted
    std::atomic<uint32_t> max_acked[kMaxGroups]{};         // highest version acknowledged
    std::atomic<uint32_t> max_erase_intent[kMaxGroups]{};  // highest erase version attempted
    std::atomic<uint32_t> final_version[kMaxGroups]{};     // what the end state must show
    ReaderStats readers[kMaxReaders];
};

struct RunOptions {
    uint32_t groups = 200;            // keys = 2 * groups; a group is committed atomically
    int writers = 2;                  // concurrent writer processes
    int readers = 2;                  // concurrent reader processes
    uint64_t initial_capacity = 64;   // small: the store must grow by generation
    int kills = 0;                    // > 0: crash mode, SIGKILL this many writers
    uint64_t min_acked = 0;           // crash mode: go on killing past `kills` until this many
                                      // commits were acknowledged (at most 4 x kills in all)
    uint64_t min_rebuilds = 0;        // ... and this many rebuild() calls completed
    int max_kill_delay_us = 25000;    // a writer lives uniform [0, this) before SIGKILL
    uint64_t commits_per_writer = 0;  // normal mode: each writer commits this many times
    int max_batch_groups = 4;         // groups per commit: 1..this
    int big_batch_percent = 3;        // commits that rewrite max(32, groups/4) groups at once
    int rebuild_percent = 2;          // writer steps that call rebuild()
    uint64_t seed = 0;                // 0: random (printed)
};

struct RunResult {
    std::vector<std::string> errors;  // empty: every assertion held
    uint64_t seed = 0;
    int kills = 0;
    uint64_t commits_started = 0;
    uint64_t commits_acked = 0;
    uint64_t writer_opens = 0;
    uint64_t rebuilds = 0;
    uint64_t max_open_us = 0;
    uint64_t reader_calls = 0;
    uint64_t found = 0;
    uint64_t absent = 0;
    uint64_t unavailable = 0;
    uint64_t max_stall_us = 0;
    uint64_t max_call_us = 0;
    uint64_t max_unavailable_streak = 0;
    uint64_t final_generation = 0;
    uint64_t final_seq = 0;
    double seconds = 0;
    std::string summary() const;
};

// Runs one stress scenario in a fresh temporary store and checks:
//  - every read decodes as exactly one version's image (no torn read) and that
//    version was attempted; per reader, a key's version never goes backwards;
//  - a writer opening after a kill sees every group's batch whole;
//  - at the end a fresh writer opens (no hang), check() passes, commits; every
//    acknowledged version survived; readers that were open all along see the
//    final state (they followed every new generation);
//  - no reader made no progress for 10 s (watchdog) or stalled 10 s.
RunResult run_store_stress(const RunOptions& options);

}  // namespace stress
