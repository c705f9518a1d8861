// Crash safety and concurrency of the store across processes (harness.hpp).
// The suite SIGKILLs 600 writers in total; STRESS_SEED=<n> replays a run's
// random choices (kill timing still depends on the scheduler).
#include <gtest/gtest.h>

#include <iostream>

#include "harness.hpp"
#include "image.hpp"

namespace stress {
namespace {

void expect_clean(const RunResult& r) {
    std::cout << "[ stats    ] " << r.summary() << std::endl;
    ::testing::Test::RecordProperty("stats", r.summary());
    for (const auto& e : r.errors) ADD_FAILURE() << e;
    EXPECT_TRUE(r.errors.empty()) << "seed " << r.seed << " (rerun with STRESS_SEED=" << r.seed << ")";
}

TEST(StoreImage, DecodesItsOwnImagesAndRejectsMixtures) {
    const std::string key = stress_key(3);
    for (uint32_t v = 1; v < 40; ++v) {
        if (is_erase(v)) continue;
        const auto rec = make_image(key, v);
        uint32_t got = 0;
        std::string why;
        ASSERT_TRUE(decode_record(rec, key, got, why)) << why;
        EXPECT_EQ(got, v);
        auto torn = rec;
        torn.services = make_image(key, v + 1).services;  // half of the next version
        if (!is_erase(v + 1)) {
            EXPECT_FALSE(decode_record(torn, key, got, why)) << v;
        }
        auto reason = rec;
        for (auto& s : reason.services)
            if (s.suspended) s.reason += "y";  // one field off
        EXPECT_FALSE(decode_record(reason, key, got, why)) << v;
    }
    EXPECT_FALSE([&] {
        uint32_t got = 0;
        std::string why;
        return decode_record(make_image(stress_key(5), 2), key, got, why);  // wrong key
    }());
}

TEST(CrashSafety, SigkillWritersWhileReadersLookUp) {
    RunOptions o;
    o.groups = 200;
    o.writers = 2;
    o.readers = 2;
    o.kills = 400;
    o.min_acked = 100;
    o.max_kill_delay_us = 25000;
    const RunResult r = run_store_stress(o);
    expect_clean(r);
    EXPECT_GE(r.kills, 400);
    // The run means something only if writers got commits through between
    // kills; the kill loop goes on until they did (min_acked), within a bound.
    EXPECT_GE(r.commits_acked, 100u);
    EXPECT_GT(r.found, 0u);
}

TEST(CrashSafety, SigkillDuringLargeBatchesGrowthAndRebuilds) {
    RunOptions o;
    o.groups = 400;
    o.writers = 2;
    o.readers = 2;
    o.kills = 200;
    o.min_acked = 50;
    o.min_rebuilds = 1;
    o.max_kill_delay_us = 60000;
    o.big_batch_percent = 30;   // many commits rewrite 100 groups (200 records) at once
    o.rebuild_percent = 10;     // and many writers publish a new generation
    o.initial_capacity = 16;    // growth by generation early on
    const RunResult r = run_store_stress(o);
    expect_clean(r);
    EXPECT_GE(r.kills, 200);
    EXPECT_GE(r.commits_acked, 50u);
    EXPECT_GT(r.rebuilds, 0u);
    EXPECT_GT(r.final_generation, 1u) << "the store never published a new generation";
}

TEST(Concurrency, WritersAndReadersNeverSeeATornState) {
    RunOptions o;
    o.groups = 150;
    o.writers = 3;
    o.readers = 3;
    o.commits_per_writer = 250;
    o.rebuild_percent = 1;
    o.initial_capacity = 32;
    const RunResult r = run_store_stress(o);
    expect_clean(r);
    EXPECT_EQ(r.commits_acked, 3u * 250u);
    EXPECT_EQ(r.commits_started, r.commits_acked);
    EXPECT_GT(r.found, 1000u);
}

}  // namespace
}  // namespace stress
