// Sliding-window rate counters (synthetic clock values: no sleeping).
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "config.hpp"
#include "count_log.hpp"
#include "counters.hpp"
#include "test_util.hpp"
#include "usage.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kT0 = 1000000 * kHour;  // on a bucket boundary of every kind

class CountersTest : public ::testing::Test {
protected:
    TempDir dir;
    std::unique_ptr<Counters> c;

    void SetUp() override {
        std::string error;
        c = Counters::open(dir.path(), true, 16, error);
        ASSERT_TRUE(c) << error;
    }
};

}  // namespace

TEST_F(CountersTest, AddAndTotalAreExact) {
    EXPECT_EQ(c->total("a@example.com", CounterKind::messages, kT0), 0);
    EXPECT_EQ(c->add("a@example.com", CounterKind::messages, 1, kT0), 1);
    EXPECT_EQ(c->add("a@example.com", CounterKind::messages, 1, kT0 + 10), 2);
    EXPECT_EQ(c->add("a@example.com", CounterKind::messages, 40, kT0 + 2 * kHour), 42);
    EXPECT_EQ(c->total("a@example.com", CounterKind::messages, kT0 + 2 * kHour), 42);
    EXPECT_EQ(c->total("b@example.com", CounterKind::messages, kT0), 0);
}

TEST_F(CountersTest, WindowSlides) {
    const std::string k = "a@example.com";
    c->add(k, CounterKind::messages, 5, kT0);             // bucket 0
    c->add(k, CounterKind::messages, 7, kT0 + 5 * kHour);  // bucket 5
    // The first bucket counts for 24 hourly widths, then drops out.
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 24 * kHour - 1), 12);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 24 * kHour), 7);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 29 * kHour - 1), 7);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 29 * kHour), 0);
    // Reusing the ring position of an old bucket starts it from zero.
    EXPECT_EQ(c->add(k, CounterKind::messages, 1, kT0 + 24 * kHour), 1 + 7);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 48 * kHour), 0);
}

// The usage view's fall-back times are the moments total() drops.
TEST_F(CountersTest, UsageSaysExactlyWhenTheCountFallsBack) {
    const std::string k = "a@example.com";
    c->add(k, CounterKind::messages, 3, kT0 + 10);             // bucket 0
    c->add(k, CounterKind::messages, 2, kT0 + 2 * kHour + 5);  // bucket 2
    Config cfg;
    cfg.limits.messages_per_day = 5;
    cfg.limits.offdomain_recipients_per_day = 0;  // off: no limit, null in JSON
    const int64_t now = kT0 + 3 * kHour;
    const Usage u = usage_of(cfg, *c, k, "", now);
    ASSERT_EQ(u.counters.size(), 5u) << "no IP asked for: the mailbox's five counters";
    const CounterUsage& m = u.counters[0];
    EXPECT_STREQ(m.limit_name, "messages_per_day");
    EXPECT_EQ(m.count, 5);
    EXPECT_EQ(m.limit, 5);
    EXPECT_EQ(m.window, 24 * kHour);
    ASSERT_EQ(m.falls_back.size(), 2u);
    EXPECT_EQ(m.falls_back[0].leaves, kT0 + 24 * kHour);
    EXPECT_EQ(m.falls_back[0].count, 3u);
    EXPECT_EQ(m.falls_back[1].leaves, kT0 + 26 * kHour);
    EXPECT_EQ(m.falls_back[1].count, 2u);
    EXPECT_EQ(m.under_limit_at, kT0 + 24 * kHour) << "at the limit until the first bucket leaves";
    EXPECT_EQ(m.clear_at, kT0 + 26 * kHour);
    // The times agree with total(): the count drops exactly then.
    for (const auto& b : m.falls_back) {
        EXPECT_EQ(c->total(k, CounterKind::messages, b.leaves - 1) - c->total(k, CounterKind::messages, b.leaves),
                  b.count);
    }
    EXPECT_EQ(u.counters[1].limit, 0);
    const auto j = usage_json(u);
    EXPECT_TRUE(j["counters"]["offdomain_recipients_per_day"]["limit"].is_null());
    EXPECT_TRUE(j["counters"]["offdomain_recipients_per_day"]["clear_at"].is_null());
    EXPECT_EQ(j["counters"]["messages_per_day"]["falls_back"][0]["at"], kT0 + 24 * kHour);
    // Under the limit: no wait.
    cfg.limits.messages_per_day = 6;
    EXPECT_EQ(usage_of(cfg, *c, k, "", now).counters[0].under_limit_at, 0);
}

TEST_F(CountersTest, UsageOfAnIpUsesItsHourWindow) {
    c->add("192.0.2.1", CounterKind::ip_offdomain_rcpts, 4, kT0 + 301);  // 5-minute bucket 1
    Config cfg;
    cfg.limits.offdomain_recipients_per_hour_per_ip = 4;
    const Usage u = usage_of(cfg, *c, "a@example.com", "192.0.2.1", kT0 + 600);
    ASSERT_EQ(u.counters.size(), 6u);
    const CounterUsage& ip = u.counters[3];
    EXPECT_EQ(ip.key, "192.0.2.1");
    EXPECT_EQ(ip.count, 4);
    EXPECT_EQ(ip.window, kHour);
    EXPECT_EQ(ip.under_limit_at, kT0 + 300 + kHour);
    EXPECT_EQ(c->total("192.0.2.1", CounterKind::ip_offdomain_rcpts, kT0 + 300 + kHour), 0);
    reset_usage(cfg, *c, "a@example.com", "192.0.2.1");
    EXPECT_EQ(usage_of(cfg, *c, "a@example.com", "192.0.2.1", kT0 + 600).counters[2].count, 0);
}

TEST(UsageSubject, MailboxesDomainsAndCanonicalIps) {
    Config cfg;
    std::string key, ip;
    EXPECT_TRUE(usage_subject(cfg, "A+tag@Example.COM", "2001:DB8:0::1", key, ip).ok());
    EXPECT_EQ(key, "a@example.com");
    EXPECT_EQ(ip, "2001:db8::1");
    EXPECT_TRUE(usage_subject(cfg, "@Example.COM", "", key, ip).ok());  // its limits.domain_* sums
    EXPECT_EQ(key, "@example.com");
    EXPECT_EQ(usage_subject(cfg, "@example.com", "192.0.2.1", key, ip).code, Exit::bad_input) << "an IP is a mailbox's";
    EXPECT_EQ(usage_subject(cfg, "not an address", "", key, ip).code, Exit::bad_input);
    EXPECT_EQ(usage_subject(cfg, "a@example.com", "192.0.2", key, ip).code, Exit::bad_input);
    EXPECT_EQ(usage_subject(cfg, "a@example.com", "192.0.2.1/24", key, ip).code, Exit::bad_input);
}

TEST_F(CountersTest, LongIdleGapForgetsEverything) {
    const std::string k = "idle@example.com";
    for (int h = 0; h < 24; ++h) c->add(k, CounterKind::offdomain_rcpts, 2, kT0 + h * kHour);
    EXPECT_EQ(c->total(k, CounterKind::offdomain_rcpts, kT0 + 23 * kHour), 48);
    EXPECT_EQ(c->add(k, CounterKind::offdomain_rcpts, 3, kT0 + 1000 * kHour), 3);
}

TEST_F(CountersTest, KindsAreIndependent) {
    const std::string k = "a@example.com";
    c->add(k, CounterKind::messages, 3, kT0);
    c->add(k, CounterKind::offdomain_rcpts, 10, kT0);
    c->add(k, CounterKind::spam_reports, 1, kT0);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0), 3);
    EXPECT_EQ(c->total(k, CounterKind::offdomain_rcpts, kT0), 10);
    EXPECT_EQ(c->total(k, CounterKind::spam_reports, kT0), 1);
    EXPECT_EQ(c->total(k, CounterKind::ip_offdomain_rcpts, kT0), 0);
}

TEST_F(CountersTest, IpKindUsesFiveMinuteBucketsOverAnHour) {
    EXPECT_EQ(bucket_width(CounterKind::ip_offdomain_rcpts), 300);
    EXPECT_EQ(bucket_width(CounterKind::messages), 3600);
    const std::string ip = "192.0.2.7";
    c->add(ip, CounterKind::ip_offdomain_rcpts, 100, kT0);
    c->add(ip, CounterKind::ip_offdomain_rcpts, 1, kT0 + 299);  // same bucket
    c->add(ip, CounterKind::ip_offdomain_rcpts, 10, kT0 + 300);
    // limits.offdomain_recipients_per_hour_per_ip: twelve 5-minute buckets.
    EXPECT_EQ(c->total(ip, CounterKind::ip_offdomain_rcpts, kT0 + 12 * 300 - 1), 111);
    EXPECT_EQ(c->total(ip, CounterKind::ip_offdomain_rcpts, kT0 + 12 * 300), 10);  // an hour later
    EXPECT_EQ(c->total(ip, CounterKind::ip_offdomain_rcpts, kT0 + 13 * 300), 0);
    EXPECT_EQ(c->add(ip, CounterKind::ip_offdomain_rcpts, 1, kT0 + 13 * 300), 1);
}

TEST_F(CountersTest, DomainAndUnknownRecipientKindsHaveTheirWindows) {
    // limits.domain_messages_per_hour and unknown_recipients_per_hour: an hour
    // in five-minute buckets; limits.domain_offdomain_recipients_per_day: a day.
    EXPECT_EQ(window_length(CounterKind::domain_messages), kHour);
    EXPECT_EQ(window_length(CounterKind::unknown_rcpts), kHour);
    EXPECT_EQ(window_length(CounterKind::domain_offdomain_rcpts), 24 * kHour);
    const std::string d = "@example.com", m = "a@example.com";
    c->add(d, CounterKind::domain_messages, 3, kT0);
    c->add(d, CounterKind::domain_offdomain_rcpts, 5, kT0);
    c->add(m, CounterKind::unknown_rcpts, 2, kT0 + 300);
    EXPECT_EQ(c->total(d, CounterKind::domain_messages, kT0 + kHour - 1), 3);
    EXPECT_EQ(c->total(d, CounterKind::domain_messages, kT0 + kHour), 0);
    EXPECT_EQ(c->total(m, CounterKind::unknown_rcpts, kT0 + kHour), 2);
    EXPECT_EQ(c->total(m, CounterKind::unknown_rcpts, kT0 + kHour + 300), 0);
    EXPECT_EQ(c->total(d, CounterKind::domain_offdomain_rcpts, kT0 + 24 * kHour - 1), 5);
    EXPECT_EQ(c->total(d, CounterKind::domain_offdomain_rcpts, kT0 + 24 * kHour), 0);
    // Each kind its own count under the same key.
    EXPECT_EQ(c->total(d, CounterKind::messages, kT0), 0);
    EXPECT_EQ(c->add_within(d, CounterKind::domain_messages, 1, 3, kT0 + 1), 4) << "over 3: nothing added";
    EXPECT_EQ(c->total(d, CounterKind::domain_messages, kT0 + 1), 3);
}

TEST_F(CountersTest, UsageOfADomainIsItsOwnSumsAndAMailboxsIncludesUnknownRecipients) {
    Config cfg;
    cfg.limits.domain_messages_per_hour = 10;
    c->add("@example.com", CounterKind::domain_messages, 4, kT0);
    c->add("a@example.com", CounterKind::unknown_rcpts, 2, kT0);
    c->add("@example.com", CounterKind::failed_outcomes, 3, kT0);
    const Usage d = usage_of(cfg, *c, "@example.com", "", kT0);
    ASSERT_EQ(d.counters.size(), 4u);
    EXPECT_STREQ(d.counters[0].limit_name, "domain_messages_per_hour");
    EXPECT_EQ(d.counters[0].count, 4);
    EXPECT_EQ(d.counters[0].limit, 10);
    EXPECT_STREQ(d.counters[1].limit_name, "domain_offdomain_recipients_per_day");
    // limits.failed_share_percent's two counts, a mailbox's and a domain's alike (no limit of their own).
    EXPECT_STREQ(d.counters[2].limit_name, "failed_share_recipients");
    EXPECT_STREQ(d.counters[3].limit_name, "failed_share_failed");
    EXPECT_EQ(d.counters[3].count, 3);
    EXPECT_EQ(d.counters[3].limit, 0);
    const Usage m = usage_of(cfg, *c, "a@example.com", "", kT0);
    ASSERT_EQ(m.counters.size(), 5u);
    EXPECT_STREQ(m.counters[2].limit_name, "unknown_recipients_per_hour");
    EXPECT_EQ(m.counters[2].count, 2);
    EXPECT_STREQ(m.counters[4].limit_name, "failed_share_failed");
    // Resetting the domain clears its sums only.
    reset_usage(cfg, *c, "@example.com", "");
    EXPECT_EQ(c->total("@example.com", CounterKind::domain_messages, kT0), 0);
    EXPECT_EQ(c->total("@example.com", CounterKind::failed_outcomes, kT0), 0);
    EXPECT_EQ(c->total("a@example.com", CounterKind::unknown_rcpts, kT0), 2);
}

TEST_F(CountersTest, RemoveTakesBackARefusedMessage) {
    const std::string k = "a@example.com";
    c->add(k, CounterKind::messages, 5, kT0);
    c->remove(k, CounterKind::messages, 2, kT0 + 10);
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 20), 3);
    c->remove(k, CounterKind::messages, 10, kT0);  // more than there is: nothing
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0), 3);
    c->add(k, CounterKind::messages, 4, kT0 + 24 * kHour);  // reuses the bucket
    c->remove(k, CounterKind::messages, 3, kT0);            // its counts are gone anyway
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0 + 24 * kHour), 4);
    c->remove("unknown@example.com", CounterKind::messages, 1, kT0);
    EXPECT_EQ(c->total("unknown@example.com", CounterKind::messages, kT0), 0);
}

TEST_F(CountersTest, FullTableRefusesInsteadOfMisCounting) {
    int refused = 0;
    for (int i = 0; i < 200; ++i)
        if (c->add("k" + std::to_string(i), CounterKind::messages, 1, kT0) < 0) ++refused;
    EXPECT_GT(refused, 0) << "a table sized for 16 keys took 200";
    // Keys already in keep counting exactly.
    EXPECT_EQ(c->add("k0", CounterKind::messages, 1, kT0), 2);
}

TEST_F(CountersTest, IdleKeysGiveTheirEntriesToNewKeys) {
    // Fill the table (sized for 16 keys) with client IPs at kT0.
    std::vector<std::string> ips;
    for (int i = 0; i < 200; ++i) {
        const std::string ip = "192.0.2." + std::to_string(i);
        if (c->add(ip, CounterKind::ip_offdomain_rcpts, 3, kT0) > 0) ips.push_back(ip);
    }
    ASSERT_LT(ips.size(), 200u) << "the table must be full for this test";
    const std::string live = "a@example.com";
    // While they are inside their window, nobody takes their entries.
    EXPECT_LT(c->add("new-ip", CounterKind::ip_offdomain_rcpts, 1, kT0 + 60), 0);
    // Two hours on, the IPs can count nothing any more: new keys, of any
    // kind, get their entries and count from zero.
    const int64_t later = kT0 + 2 * kHour;
    for (int i = 0; i < 12; ++i) {
        const std::string k = "m" + std::to_string(i) + "@example.com";
        ASSERT_EQ(c->add(k, CounterKind::messages, 1, later), 1) << k;
        ASSERT_EQ(c->add(k, CounterKind::messages, 2, later + kHour), 3) << k;
        ASSERT_EQ(c->add(k, CounterKind::offdomain_rcpts, 5, later), 5) << k;
    }
    EXPECT_EQ(c->add("198.51.100.1", CounterKind::ip_offdomain_rcpts, 4, later), 4);
    // A key in use is never taken: its count goes on.
    EXPECT_EQ(c->add("m0@example.com", CounterKind::messages, 1, later + 23 * kHour), 4);
    for (int i = 0; i < 200; ++i) c->add("x" + std::to_string(i), CounterKind::messages, 1, later + 23 * kHour);
    EXPECT_EQ(c->total("m0@example.com", CounterKind::messages, later + 23 * kHour), 4);
    // An IP taken over has no count left.
    EXPECT_EQ(c->total(ips.front(), CounterKind::ip_offdomain_rcpts, later), 0);
}

TEST_F(CountersTest, SharedBetweenMappingsAndProcesses) {
    std::string error;
    auto other = Counters::open(dir.path(), false, 0, error);
    ASSERT_TRUE(other) << error;
    c->add("shared@example.com", CounterKind::messages, 2, kT0);
    EXPECT_EQ(other->total("shared@example.com", CounterKind::messages, kT0), 2);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::string e;
        auto mine = Counters::open(dir.path(), false, 0, e);
        for (int i = 0; mine && i < 1000; ++i) mine->add("shared@example.com", CounterKind::messages, 1, kT0);
        ::_exit(mine ? 0 : 1);
    }
    for (int i = 0; i < 1000; ++i) c->add("shared@example.com", CounterKind::messages, 1, kT0);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_EQ(other->total("shared@example.com", CounterKind::messages, kT0), 2002);
}

TEST_F(CountersTest, ConcurrentThreadsCountExactly) {
    // Every add sees a distinct total: a limit of N lets exactly N through.
    constexpr int kPerThread = 20000;
    std::vector<int64_t> seen_a, seen_b;
    auto work = [&](std::vector<int64_t>& seen) {
        seen.reserve(kPerThread);
        for (int i = 0; i < kPerThread; ++i)
            seen.push_back(c->add("hot@example.com", CounterKind::messages, 1, kT0 + i % 3600));
    };
    std::thread a(work, std::ref(seen_a)), b(work, std::ref(seen_b));
    a.join();
    b.join();
    EXPECT_EQ(c->total("hot@example.com", CounterKind::messages, kT0 + 3599), 2 * kPerThread);
    std::vector<int64_t> all = seen_a;
    all.insert(all.end(), seen_b.begin(), seen_b.end());
    std::sort(all.begin(), all.end());
    for (int i = 0; i < 2 * kPerThread; ++i)
        ASSERT_EQ(all[i], i + 1) << "totals seen by concurrent adds are not 1..N";
}

TEST(CountersOpen, MissingAndCorrupt) {
    TempDir dir;
    std::string error;
    EXPECT_FALSE(Counters::open(dir.path(), false, 16, error));
    EXPECT_FALSE(error.empty());
    write_file(dir / "counters", std::string(8192, 'z'));
    error.clear();
    EXPECT_FALSE(Counters::open(dir.path(), false, 16, error));
    EXPECT_NE(error.find("layout"), std::string::npos) << error;
}

// fleet.counters = "fleet": the agent sets the other nodes' share of a key's
// window, bucket by bucket; buckets outside the window are dropped, an empty
// set clears it, and the share never mixes with the node's own count.
TEST_F(CountersTest, FleetShareBucketsAreSetWholeAndKeptApart) {
    const std::string k = "a@example.com";
    const uint64_t hour = kT0 / kHour;
    ASSERT_TRUE(c->set_buckets(k, fleet_share(CounterKind::messages),
                               {{hour - 2, 4}, {hour, 3}, {hour - 30, 100}}, kT0));
    EXPECT_EQ(c->total(k, fleet_share(CounterKind::messages), kT0), 7) << "a bucket past the window is dropped";
    EXPECT_EQ(c->total(k, CounterKind::messages, kT0), 0) << "the node's own count is another entry";
    auto got = c->buckets(k, fleet_share(CounterKind::messages), kT0);
    std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.number < b.number; });
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].number, hour - 2);
    EXPECT_EQ(got[1].count, 3u);
    ASSERT_TRUE(c->set_buckets(k, fleet_share(CounterKind::messages), {{hour, 1}}, kT0));
    EXPECT_EQ(c->total(k, fleet_share(CounterKind::messages), kT0), 1) << "replaced, not added";
    ASSERT_TRUE(c->set_buckets(k, fleet_share(CounterKind::messages), {}, kT0));
    EXPECT_EQ(c->total(k, fleet_share(CounterKind::messages), kT0), 0);
    // An hour kind's share keeps its five-minute buckets over one hour.
    const uint64_t tick = kT0 / 300;
    ASSERT_TRUE(c->set_buckets("192.0.2.1", fleet_share(CounterKind::ip_offdomain_rcpts), {{tick - 11, 5}, {tick - 12, 9}},
                               kT0));
    EXPECT_EQ(c->total("192.0.2.1", fleet_share(CounterKind::ip_offdomain_rcpts), kT0), 5);
}

// The count log: what Exim appends the agent reads once, in order; a ring
// overrun is counted as lost, never read as garbage.
TEST(CountLog, AppendsAreReadInOrderAndOverrunsCountAsLost) {
    TempDir dir;
    std::string error;
    auto log = CountLog::open(dir.path(), true, error);
    ASSERT_TRUE(log) << error;
    auto other = CountLog::open(dir.path(), false, error);  // another process's mapping
    ASSERT_TRUE(other) << error;
    other->append("a@example.com", "192.0.2.1");
    other->append(std::string(CountLog::kMaxSender, 'x'), "2001:db8::1");
    other->append(std::string(CountLog::kMaxSender + 1, 'x'), "");  // no address is that long: not recorded
    std::vector<CountedMessage> got;
    uint64_t lost = 0;
    EXPECT_EQ(log->read(0, false, got, lost), 2u);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].sender, "a@example.com");
    EXPECT_EQ(got[0].client_ip, "192.0.2.1");
    EXPECT_EQ(got[1].sender.size(), CountLog::kMaxSender);
    EXPECT_EQ(got[1].client_ip, "2001:db8::1");
    EXPECT_EQ(lost, 0u);
    for (uint64_t i = 0; i < log->slots() + 10; ++i) other->append("b" + std::to_string(i) + "@example.com", "");
    got.clear();
    const uint64_t next = log->read(2, false, got, lost);
    EXPECT_EQ(next, log->head());
    EXPECT_EQ(lost, 10u);
    ASSERT_EQ(got.size(), log->slots());
    EXPECT_EQ(got.front().sender, "b10@example.com");
    EXPECT_EQ(got.back().sender, "b" + std::to_string(log->slots() + 9) + "@example.com");
}

TEST(CountLog, MissingOrForeignFileIsRefusedClearly) {
    TempDir dir;
    std::string error;
    EXPECT_FALSE(CountLog::open(dir.path(), false, error));
    EXPECT_NE(error.find("count-log"), std::string::npos) << error;
    write_file(dir.path() + "/count-log", std::string(4096, 'z'));
    error.clear();
    EXPECT_FALSE(CountLog::open(dir.path(), false, error));
    EXPECT_NE(error.find("mailsuspend init"), std::string::npos) << error;
}
