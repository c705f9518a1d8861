// Crash torture: thousands of SIGKILLed store writers while readers look up
// continuously (the stress harness of tests/stress, scaled up).
// Usage: crash_torture [KILLS=2000] [WRITERS=2] [READERS=2]
// Prints the run's numbers; exit 0 only with 0 lost, 0 corrupt, 0 torn.
#include <cstdio>
#include <cstdlib>

#include "harness.hpp"

int main(int argc, char** argv) {
    stress::RunOptions o;
    o.kills = argc > 1 ? std::atoi(argv[1]) : 2000;
    o.writers = argc > 2 ? std::atoi(argv[2]) : 2;
    o.readers = argc > 3 ? std::atoi(argv[3]) : 2;
    o.groups = 500;
    o.initial_capacity = 64;
    o.max_kill_delay_us = 30000;
    o.big_batch_percent = 10;
    o.rebuild_percent = 3;
    if (o.kills <= 0 || o.writers < 1 || o.readers < 1 || o.readers > stress::kMaxReaders) {
        std::fprintf(stderr, "usage: crash_torture [KILLS] [WRITERS] [READERS<=%d]\n", stress::kMaxReaders);
        return 2;
    }
    const stress::RunResult r = stress::run_store_stress(o);
    std::printf("%s\n", r.summary().c_str());
    std::printf("lost_or_corrupt_or_torn=%zu\n", r.errors.size());
    for (const auto& e : r.errors) std::printf("ERROR %s\n", e.c_str());
    return r.errors.empty() ? 0 : 1;
}
