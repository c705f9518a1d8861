// limits.login_ips_per_day: the (mailbox, IP) pair table and the counting
// (synthetic clock values: no sleeping).  What is counted: a pair not seen
// within the 24 hours before counts once into the mailbox's sliding day;
// never more than the distinct IPs of the day.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "config.hpp"
#include "counters.hpp"
#include "login_pairs.hpp"
#include "policy.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kT0 = 1000000 * kHour;
constexpr const char* kBox = "a@example.com";

class LoginPairsTest : public ::testing::Test {
protected:
    TempDir dir;
    std::unique_ptr<LoginPairs> pairs;
    std::unique_ptr<Counters> counters;
    Limits limits;

    void SetUp() override {
        std::string error;
        pairs = LoginPairs::open(dir.path(), true, 64, error);
        ASSERT_TRUE(pairs) << error;
        counters = Counters::open(dir.path(), true, 16, error, Counters::kLoginCountersName);
        ASSERT_TRUE(counters) << error;
        limits.login_ips_per_day = 3;
    }
    RateVerdict login(const std::string& ip, int64_t t, const char* box = kBox) {
        return count_login(limits, pairs.get(), counters.get(), box, ip, t).verdict;
    }
    int64_t count(int64_t t, const char* box = kBox) { return counters->total(box, CounterKind::login_ips, t); }
};

std::string ip(int n) { return "192.0.2." + std::to_string(n); }

}  // namespace

TEST_F(LoginPairsTest, APairIsFreshOnceADayAndAgainAfter24hAway) {
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0), LoginPairs::Seen::fresh);
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0 + 60), LoginPairs::Seen::again);
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0 + 23 * kHour), LoginPairs::Seen::again);
    // last seen at kT0 + 23h: still known 24h later minus a minute, fresh a full day later
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0 + 47 * kHour - 60), LoginPairs::Seen::again);
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0 + 71 * kHour), LoginPairs::Seen::fresh);
    // the same IP is new to another mailbox; another IP is new to this one
    EXPECT_EQ(pairs->note("b@example.com", ip(1), kT0), LoginPairs::Seen::fresh);
    EXPECT_EQ(pairs->note(kBox, ip(2), kT0), LoginPairs::Seen::fresh);
}

TEST_F(LoginPairsTest, ForgetTakesBackAFreshPair) {
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0), LoginPairs::Seen::fresh);
    EXPECT_TRUE(pairs->seen(kBox, ip(1), kT0));
    pairs->forget(kBox, ip(1), kT0);
    EXPECT_FALSE(pairs->seen(kBox, ip(1), kT0));
    EXPECT_EQ(pairs->note(kBox, ip(1), kT0), LoginPairs::Seen::fresh);
}

TEST_F(LoginPairsTest, AFullNeighbourhoodCountsNothingRatherThanTooMuch) {
    // 64 pairs of capacity = 128 entries: fill far past it within one day.
    int unknown = 0, fresh = 0;
    for (int i = 0; i < 1000; ++i) {
        const auto s = pairs->note("box" + std::to_string(i) + "@example.com", ip(1), kT0);
        unknown += s == LoginPairs::Seen::unknown;
        fresh += s == LoginPairs::Seen::fresh;
    }
    EXPECT_LE(fresh, 128);
    EXPECT_GT(unknown, 0);
    // a pair that found no room is never reported as seen later
    for (int i = 0; i < 1000; ++i)
        EXPECT_NE(pairs->note("box" + std::to_string(i) + "@example.com", ip(1), kT0 + 60), LoginPairs::Seen::fresh)
            << "only pairs that found room are remembered; the others stay unknown, never fresh twice";
}

TEST_F(LoginPairsTest, IdlePairsMakeRoomForNewOnes) {
    for (int i = 0; i < 1000; ++i) pairs->note("box" + std::to_string(i) + "@example.com", ip(1), kT0);
    // a day later every entry is idle: new pairs find room again
    EXPECT_EQ(pairs->note("late@example.com", ip(9), kT0 + 25 * kHour), LoginPairs::Seen::fresh);
}

TEST_F(LoginPairsTest, CountsDistinctIpsAndCrossesAboveTheLimitOnly) {
    for (int round = 0; round < 3; ++round)
        for (int n = 1; n <= 3; ++n) ASSERT_EQ(login(ip(n), kT0 + round * 600 + n), RateVerdict::allow);
    EXPECT_EQ(count(kT0 + 2000), 3) << "three IPs, each seen three times: three";
    const RateDecision d = count_login(limits, pairs.get(), counters.get(), kBox, ip(4), kT0 + 3000);
    EXPECT_EQ(d.verdict, RateVerdict::crossed);
    EXPECT_STREQ(d.limit, "login_ips_per_day");
    EXPECT_EQ(d.total, 4);
    EXPECT_EQ(d.max, 3);
    EXPECT_EQ(describe(d, ip(4)),
              "4 client IPs logged in within 24h, the last from 192.0.2.4 (limits.login_ips_per_day = 3)");
    // the crossing IP is neither counted nor remembered: it crosses again
    EXPECT_EQ(count(kT0 + 3000), 3);
    EXPECT_FALSE(pairs->seen(kBox, ip(4), kT0 + 3000));
    EXPECT_EQ(login(ip(4), kT0 + 3100), RateVerdict::crossed);
    // the known ones still pass; another mailbox counts apart
    EXPECT_EQ(login(ip(1), kT0 + 3200), RateVerdict::allow);
    EXPECT_EQ(login(ip(4), kT0 + 3200, "b@example.com"), RateVerdict::allow);
}

TEST_F(LoginPairsTest, AnIpSeenDailyCountsOnceAndTheDaySlides) {
    // ip(1) logs in every 12 hours for three days: counted once, the first time
    for (int64_t t = kT0; t < kT0 + 72 * kHour; t += 12 * kHour) ASSERT_EQ(login(ip(1), t), RateVerdict::allow);
    EXPECT_EQ(count(kT0 + 12 * kHour), 1);
    // its count left the window with the first day; it never counts more than once
    EXPECT_LE(count(kT0 + 72 * kHour), 1);
    // two new IPs now and one the next day: the first two have left by then
    EXPECT_EQ(login(ip(2), kT0 + 100 * kHour), RateVerdict::allow);
    EXPECT_EQ(login(ip(3), kT0 + 100 * kHour), RateVerdict::allow);
    EXPECT_EQ(count(kT0 + 100 * kHour), 2);
    EXPECT_EQ(count(kT0 + 125 * kHour), 0);
    EXPECT_EQ(login(ip(4), kT0 + 125 * kHour), RateVerdict::allow);
}

TEST_F(LoginPairsTest, OffOrWithoutTablesNothingIsCounted) {
    limits.login_ips_per_day = 0;
    EXPECT_EQ(login(ip(1), kT0), RateVerdict::allow);
    EXPECT_FALSE(pairs->seen(kBox, ip(1), kT0));
    limits.login_ips_per_day = 3;
    EXPECT_EQ(count_login(limits, nullptr, counters.get(), kBox, ip(1), kT0).verdict, RateVerdict::unavailable);
    EXPECT_EQ(count_login(limits, pairs.get(), counters.get(), kBox, "", kT0).verdict, RateVerdict::allow);
}

TEST_F(LoginPairsTest, VerifyKnowsAWholeFileAndRefusesAnother) {
    EXPECT_TRUE(LoginPairs::verify(dir.path()).empty());
    EXPECT_TRUE(LoginPairs::verify(dir.path() + "/none").empty()) << "absent: init makes it";
    std::string error;
    EXPECT_FALSE(LoginPairs::open(dir.path() + "/none", false, 0, error)) << "opening never creates";
    // a counters file under the login pairs' name is not one
    TempDir other;
    ASSERT_TRUE(Counters::open(other.path(), true, 16, error, LoginPairs::kFileName)) << error;
    EXPECT_EQ(LoginPairs::verify(other.path()).size(), 1u);
    EXPECT_FALSE(LoginPairs::open(other.path(), false, 0, error));
}
