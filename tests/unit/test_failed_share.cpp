// The counting and decision of limits.failed_share_* (policy.hpp,
// count_delivery_outcome) on a real counters file, with a synthetic clock.
#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "counters.hpp"
#include "policy.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kT0 = 1000000 * kHour;  // on a bucket boundary

class FailedShareTest : public ::testing::Test {
protected:
    TempDir dir;
    std::unique_ptr<Counters> c;
    Limits limits;

    void SetUp() override {
        std::string error;
        c = Counters::open(dir.path(), true, 256, error);
        ASSERT_TRUE(c) << error;
        limits.failed_share_percent = 50;
        limits.failed_share_min_recipients = 4;
    }
    RateDecision outcome(const char* sender, const char* recipient, DeliveryOutcome o, int64_t now = kT0,
                         bool first = true) {
        return count_delivery_outcome(limits, c.get(), {sender, recipient, o, first}, now);
    }
    int64_t total(std::string_view key, CounterKind kind, int64_t now = kT0) { return c->total(key, kind, now); }
};

}  // namespace

TEST_F(FailedShareTest, OffCountsNothing) {
    limits.failed_share_percent = 0;
    for (int i = 0; i < 10; ++i) EXPECT_EQ(outcome("a@x.test", "b@far.test", DeliveryOutcome::bounced).verdict,
                                           RateVerdict::allow);
    EXPECT_EQ(total("a@x.test", CounterKind::outbound_outcomes), 0);
}

TEST_F(FailedShareTest, CrossesWhenMoreThanThePercentFailedAndOnlyFromTheMinimumOn) {
    // Three bounces of three: all failed, but below the minimum volume of 4.
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(outcome("a@x.test", "b@far.test", DeliveryOutcome::bounced).verdict, RateVerdict::allow);
    // Then deliveries: 3 of 4 (75 %) is over half once the minimum is there.
    const RateDecision d = outcome("a@x.test", "c@far.test", DeliveryOutcome::delivered);
    EXPECT_EQ(d.verdict, RateVerdict::crossed);
    EXPECT_STREQ(d.limit, "failed_share_percent");
    EXPECT_FALSE(d.domain) << "the mailbox is looked at first";
    EXPECT_EQ(d.total, 3);
    EXPECT_EQ(d.of, 4);
    EXPECT_EQ(d.max, 50);
    EXPECT_EQ(describe(d, ""), "3 of 4 remote recipients bounced or deferred within 1h (limits.failed_share_percent = 50)");
}

TEST_F(FailedShareTest, ExactlyThePercentDoesNotCross) {
    for (int i = 0; i < 2; ++i) outcome("a@x.test", "b@far.test", DeliveryOutcome::bounced);
    outcome("a@x.test", "b@far.test", DeliveryOutcome::delivered);
    EXPECT_EQ(outcome("a@x.test", "b@far.test", DeliveryOutcome::delivered).verdict, RateVerdict::allow) << "2 of 4";
    EXPECT_EQ(outcome("a@x.test", "b@far.test", DeliveryOutcome::bounced).verdict, RateVerdict::crossed) << "3 of 5";
}

TEST_F(FailedShareTest, TheDomainSumsItsMailboxes) {
    // Two mailboxes of two outcomes each: neither reaches the minimum, the domain does.
    outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced);
    outcome("b@x.test", "r@far.test", DeliveryOutcome::bounced);
    outcome("a@x.test", "r@far.test", DeliveryOutcome::delivered);
    const RateDecision d = outcome("b@x.test", "s@far.test", DeliveryOutcome::bounced);
    EXPECT_EQ(d.verdict, RateVerdict::crossed);
    EXPECT_TRUE(d.domain);
    EXPECT_EQ(d.total, 3);
    EXPECT_EQ(d.of, 4);
    EXPECT_EQ(total("@x.test", CounterKind::outbound_outcomes), 4);
    EXPECT_EQ(total("b@x.test", CounterKind::failed_outcomes), 2);
    EXPECT_NE(describe(d, "").find("remote recipients of the domain's mailboxes"), std::string::npos);
}

TEST_F(FailedShareTest, ADeferralCountsOncePerRecipientDomainAndHour) {
    // One slow host defers ten recipients: one failure (any case of the domain).
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(outcome("a@x.test", i % 2 ? "r@Slow.test" : "r@slow.test", DeliveryOutcome::deferred).verdict,
                  RateVerdict::allow);
    EXPECT_EQ(total("a@x.test", CounterKind::failed_outcomes), 1);
    EXPECT_EQ(total("a@x.test", CounterKind::outbound_outcomes), 10);
    // Per sender: another mailbox's first deferral there counts for it (and
    // not again for the domain, which has seen that one).
    outcome("b@x.test", "r@slow.test", DeliveryOutcome::deferred);
    EXPECT_EQ(total("b@x.test", CounterKind::failed_outcomes), 1);
    EXPECT_EQ(total("@x.test", CounterKind::failed_outcomes), 1);
    // An hour later the domain's first deferral counts again.
    outcome("a@x.test", "r@slow.test", DeliveryOutcome::deferred, kT0 + kHour);
    EXPECT_EQ(total("a@x.test", CounterKind::failed_outcomes, kT0 + kHour), 1);
    // Deferrals to many domains each count: that is not one slow host.
    for (int i = 0; i < 3; ++i)
        outcome("c@y.test", ("r@d" + std::to_string(i) + ".test").c_str(), DeliveryOutcome::deferred);
    EXPECT_EQ(outcome("c@y.test", "r@d3.test", DeliveryOutcome::deferred).verdict, RateVerdict::crossed);
}

TEST_F(FailedShareTest, AMailboxThatCrossedLeavesItsDomainsCounts) {
    outcome("b@x.test", "r@far.test", DeliveryOutcome::delivered, kT0);  // another mailbox, an earlier bucket
    for (int i = 0; i < 3; ++i) outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced, kT0 + 300);
    ASSERT_EQ(outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced, kT0 + 600).verdict, RateVerdict::crossed);
    EXPECT_EQ(total("@x.test", CounterKind::outbound_outcomes, kT0 + 600), 5);
    take_out_of_domain(*c, "a@x.test", kT0 + 600);
    EXPECT_EQ(total("@x.test", CounterKind::outbound_outcomes, kT0 + 600), 1) << "b's delivery stays";
    EXPECT_EQ(total("@x.test", CounterKind::failed_outcomes, kT0 + 600), 0);
    EXPECT_EQ(total("a@x.test", CounterKind::failed_outcomes, kT0 + 600), 4) << "the mailbox keeps its own";
}

TEST_F(FailedShareTest, ARetryCountsNothing) {
    for (int i = 0; i < 6; ++i)
        EXPECT_EQ(outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced, kT0, false).verdict, RateVerdict::allow);
    EXPECT_EQ(total("a@x.test", CounterKind::outbound_outcomes), 0);
    EXPECT_EQ(total("@x.test", CounterKind::failed_outcomes), 0);
}

TEST_F(FailedShareTest, OutcomesLeaveAfterAnHour) {
    EXPECT_EQ(window_length(CounterKind::outbound_outcomes), kHour);
    EXPECT_EQ(window_length(CounterKind::failed_outcomes), kHour);
    EXPECT_EQ(window_length(CounterKind::deferral_marks), kHour);
    for (int i = 0; i < 3; ++i) outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced);
    // An hour later the three bounces are gone: one more is 1 of 1.
    EXPECT_EQ(outcome("a@x.test", "r@far.test", DeliveryOutcome::bounced, kT0 + kHour).verdict, RateVerdict::allow);
    EXPECT_EQ(total("a@x.test", CounterKind::failed_outcomes, kT0 + kHour), 1);
}

TEST_F(FailedShareTest, NoCountersIsUnavailable) {
    EXPECT_EQ(count_delivery_outcome(limits, nullptr, {"a@x.test", "r@far.test", DeliveryOutcome::bounced, true}, kT0)
                  .verdict,
              RateVerdict::unavailable);
}
