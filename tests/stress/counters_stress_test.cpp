// Counters (counters.hpp) hammered by several processes at once: totals must
// be exact, per-process running totals must only grow, kinds stay apart.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "counters.hpp"

namespace {

using mailsuspend::CounterKind;
using mailsuspend::Counters;

struct SharedErrors {
    std::atomic<uint32_t> ready{0};  // start barrier: all processes count at once
    std::atomic<uint32_t> count{0};
    char first[256]{};
};

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/mailsuspend-counters-XXXXXX";
        path_ = mkdtemp(tmpl) ? tmpl : "";
    }
    ~TempDir() {
        if (!path_.empty()) std::filesystem::remove_all(path_);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

void fail(SharedErrors& e, const std::string& what) {
    if (e.count.fetch_add(1) == 0) std::snprintf(e.first, sizeof e.first, "%s", what.c_str());
}

SharedErrors* shared_errors() {
    void* m = mmap(nullptr, sizeof(SharedErrors), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? nullptr : new (m) SharedErrors();
}

// Runs body(i) in n child processes at once and waits for them.
template <class Body>
void in_processes(int n, SharedErrors& e, Body body) {
    std::vector<pid_t> pids;
    for (int i = 0; i < n; ++i) {
        const pid_t pid = fork();
        if (pid == 0) {
            e.ready.fetch_add(1);
            while (e.ready.load() < static_cast<uint32_t>(n)) {
            }
            body(i);
            _exit(0);
        }
        pids.push_back(pid);
    }
    for (pid_t pid : pids) {
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail(e, "a counting process crashed");
    }
}

constexpr int64_t kNow = 1'800'000'000;

std::string account(int i) { return "user" + std::to_string(i) + "@counters.example"; }

TEST(CountersStress, ManyProcessesOnSharedKeysGiveExactTotals) {
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string error;
    ASSERT_TRUE(Counters::open(dir.path(), true, 1024, error)) << error;
    SharedErrors* e = shared_errors();
    ASSERT_NE(e, nullptr);
    constexpr int kProcs = 4, kAdds = 200000, kKeys = 16;
    const int64_t width = mailsuspend::bucket_width(CounterKind::messages);
    in_processes(kProcs, *e, [&](int p) {
        std::string err;
        auto c = Counters::open(dir.path(), false, 0, err);
        if (!c) return fail(*e, "open in child: " + err);
        std::vector<int64_t> last(kKeys * 3, 0);  // running total per key and bucket
        for (int i = 0; i < kAdds; ++i) {
            const int k = (i * 7 + p) % kKeys;
            // Three buckets inside one window: no bucket is ever stale here.
            const int64_t now = kNow + (i % 3) * width;
            const uint32_t n = 1 + (i % 3);
            const int64_t total = c->add(account(k), CounterKind::messages, n, now);
            if (total < 0) return fail(*e, "add returned -1");
            // Seen from the same moment, the window total only grows, by my n at least.
            int64_t& seen = last[k * 3 + i % 3];
            if (total < seen + n) return fail(*e, "running total went down or skipped my add");
            seen = total;
            if (i % 5 == 0 && c->add(account(k), CounterKind::spam_reports, 1, now) < 0)
                return fail(*e, "add spam_reports returned -1");
        }
    });
    EXPECT_EQ(e->count.load(), 0u) << e->first;
    auto c = Counters::open(dir.path(), false, 0, error);
    ASSERT_TRUE(c) << error;
    std::vector<int64_t> messages(kKeys, 0), spam(kKeys, 0);
    for (int p = 0; p < kProcs; ++p)
        for (int i = 0; i < kAdds; ++i) {
            messages[(i * 7 + p) % kKeys] += 1 + (i % 3);
            if (i % 5 == 0) spam[(i * 7 + p) % kKeys] += 1;
        }
    for (int k = 0; k < kKeys; ++k) {
        EXPECT_EQ(c->total(account(k), CounterKind::messages, kNow + 2 * width), messages[k]) << account(k);
        EXPECT_EQ(c->total(account(k), CounterKind::spam_reports, kNow + 2 * width), spam[k]) << account(k);
        EXPECT_EQ(c->total(account(k), CounterKind::offdomain_rcpts, kNow + 2 * width), 0) << account(k);
    }
    EXPECT_EQ(c->total("nobody@counters.example", CounterKind::messages, kNow), 0);
}

TEST(CountersStress, RacingInsertsOfNewKeysNeitherLoseNorDuplicate) {
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string error;
    constexpr int kProcs = 4, kKeys = 3000;
    ASSERT_TRUE(Counters::open(dir.path(), true, 4096, error)) << error;
    SharedErrors* e = shared_errors();
    ASSERT_NE(e, nullptr);
    // Every process inserts the same new keys in the same order: the claims race.
    in_processes(kProcs, *e, [&](int) {
        std::string err;
        auto c = Counters::open(dir.path(), false, 0, err);
        if (!c) return fail(*e, "open in child: " + err);
        for (int k = 0; k < kKeys; ++k)
            if (c->add(account(k), CounterKind::offdomain_rcpts, 1, kNow) < 0)
                return fail(*e, "add returned -1 for " + account(k) + " (table full at 3000 of 4096?)");
    });
    EXPECT_EQ(e->count.load(), 0u) << e->first;
    auto c = Counters::open(dir.path(), false, 0, error);
    ASSERT_TRUE(c) << error;
    int wrong = 0;
    for (int k = 0; k < kKeys; ++k) {
        const int64_t t = c->total(account(k), CounterKind::offdomain_rcpts, kNow);
        if (t != kProcs && ++wrong <= 5) ADD_FAILURE() << account(k) << " total " << t << ", want " << kProcs;
    }
    EXPECT_EQ(wrong, 0);
}

TEST(CountersStress, OldBucketsLeaveTheWindow) {
    TempDir dir;
    std::string error;
    auto c = Counters::open(dir.path(), true, 64, error);
    ASSERT_TRUE(c) << error;
    const int64_t width = mailsuspend::bucket_width(CounterKind::messages);
    const std::string key = account(1);
    EXPECT_EQ(c->add(key, CounterKind::messages, 5, kNow), 5);
    EXPECT_EQ(c->add(key, CounterKind::messages, 2, kNow + 10 * width), 7);
    // 24 buckets later the first add has left the window; the second not yet.
    EXPECT_EQ(c->total(key, CounterKind::messages, kNow + 24 * width), 2);
    // Reusing the first add's slot resets it in the same step: 1, not 6.
    EXPECT_EQ(c->add(key, CounterKind::messages, 1, kNow + 24 * width), 3);
    EXPECT_EQ(c->total(key, CounterKind::messages, kNow + 34 * width), 1);
}

// Exim processes open the counters with create set; on a fresh install the
// first ones race to create the file.  They must all end up counting in the
// same file.
TEST(CountersStress, ProcessesRacingToCreateTheFileCountInOneFile) {
    constexpr int kProcs = 6, kRounds = 20;
    SharedErrors* e = shared_errors();
    ASSERT_NE(e, nullptr);
    for (int round = 0; round < kRounds; ++round) {
        TempDir dir;
        ASSERT_FALSE(dir.path().empty());
        e->ready.store(0);
        in_processes(kProcs, *e, [&](int) {
            std::string err;
            auto c = Counters::open(dir.path(), true, 256, err);
            if (!c) return fail(*e, "open(create) in child: " + err);
            if (c->add(account(1), CounterKind::messages, 1, kNow) < 0) return fail(*e, "add returned -1");
        });
        ASSERT_EQ(e->count.load(), 0u) << e->first;
        std::string error;
        auto c = Counters::open(dir.path(), false, 0, error);
        ASSERT_TRUE(c) << error;
        ASSERT_EQ(c->total(account(1), CounterKind::messages, kNow), kProcs)
            << "round " << round << ": some processes counted in a file that was replaced";
    }
}

}  // namespace

// An entry idle under one key is claimed by another (a table of 4 entries,
// 6 keys, every key on every probe path) while its old key counts again:
// each round, every successful add must show in exactly its own key's total.
// Before the claim marked the old tag and re-checked, a count racing the
// hand-over went to the new key (CI: "running total went down").
TEST(CountersStress, ClaimingAnIdleEntryNeverTakesACountOfItsOldKey) {
    TempDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::string error;
    ASSERT_TRUE(Counters::open(dir.path(), true, 2, error)) << error;
    constexpr int kProcs = 4, kRounds = 300, kKeys = 6, kAddsPerRound = 6;
    struct Shared {
        std::atomic<uint32_t> arrived{0};
        std::atomic<int64_t> tally[kRounds][kKeys];
    };
    void* m = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    auto* shared = new (m) Shared();
    SharedErrors* e = shared_errors();
    ASSERT_NE(e, nullptr);
    // All processes leave barrier number k together.
    const auto barrier = [&](uint32_t k) {
        shared->arrived.fetch_add(1);
        while (shared->arrived.load() < k * kProcs) sched_yield();
    };
    in_processes(kProcs, *e, [&](int p) {
        std::string err;
        auto c = Counters::open(dir.path(), false, 0, err);
        if (!c) return fail(*e, "open in child: " + err);
        for (int r = 0; r < kRounds; ++r) {
            // Two days a round: every entry of the round before is idle.
            const int64_t now = kNow + static_cast<int64_t>(r) * 2 * 86400;
            for (int j = 0; j < kAddsPerRound; ++j) {
                const int k = (p + j + r) % kKeys;
                if (c->add(account(k), CounterKind::messages, 1, now) >= 0) shared->tally[r][k].fetch_add(1);
            }
            barrier(2 * r + 1);
            if (p == 0)
                for (int k = 0; k < kKeys; ++k) {
                    const int64_t total = c->total(account(k), CounterKind::messages, now);
                    if (total != shared->tally[r][k].load())
                        fail(*e, "round " + std::to_string(r) + ", " + account(k) + ": total " + std::to_string(total) +
                                     ", counted " + std::to_string(shared->tally[r][k].load()));
                }
            barrier(2 * r + 2);
        }
    });
    EXPECT_EQ(e->count.load(), 0u) << e->first;
    int64_t counted = 0;
    for (int r = 0; r < kRounds; ++r)
        for (int k = 0; k < kKeys; ++k) counted += shared->tally[r][k].load();
    // The table holds 4 of the 6 keys a round: most adds count, some find it full.
    EXPECT_GT(counted, int64_t{kRounds} * kProcs * kAddsPerRound / 2);
}
