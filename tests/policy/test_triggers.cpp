// Domain-level limits and the unknown-recipient trigger (issue 16, items 2
// and 3) through the C API the Exim module calls: each fires at its
// threshold and not below it, suspends send of the right target (the
// domain, the mailbox) with source rate, the limit named in the reason and
// its own text, and a lift starts the count afresh.
#include "counters.hpp"
#include "policy.hpp"
#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

const Messages kTexts;  // the built-in texts: the config below sets none

class TriggerTest : public PolicyFixture {
protected:
    // Every mailbox limit off, so only the limit under test can cross.
    std::string extra_config() const override {
        return "limits: { messages_per_day = 0; recipients_per_message = 0; offdomain_recipients_per_day = 0;\n"
               "          offdomain_recipients_per_hour_per_ip = 0; domain_messages_per_hour = 4;\n"
               "          domain_offdomain_recipients_per_day = 6; unknown_recipients_per_hour = 3;\n"
               "          suspend_for = \"1h\"; escalate_after = 3; };\n";
    }
    mailsuspend_result send(struct mailsuspend_handle* h, const char* sender, std::vector<const char*> rcpts) {
        mailsuspend_result r{};
        mailsuspend_count_message(h, sender, "192.0.2.10", rcpts.data(), static_cast<unsigned>(rcpts.size()), &r);
        return r;
    }
    mailsuspend_result check_send(struct mailsuspend_handle* h, const char* sender) {
        mailsuspend_result r{};
        mailsuspend_check_send(h, sender, "192.0.2.10", &r);
        return r;
    }
};

TEST_F(TriggerTest, DomainMessagesPerHourSumsTheMailboxesAndSuspendsTheDomain) {
    auto* h = open_handle();
    // 4 messages from two mailboxes: at the limit, every one passes.
    for (const char* sender : {"a@dom.test", "b@dom.test", "a@dom.test", "b@dom.test"})
        ASSERT_EQ(send(h, sender, {"x@dom.test"}).verdict, MAILSUSPEND_ALLOW) << sender;
    EXPECT_FALSE(record("@dom.test").at(Service::send).suspended) << "not one below the threshold";
    const auto crossing = send(h, "c@dom.test", {"x@dom.test"});
    EXPECT_EQ(crossing.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(crossing.scope, "domain");
    EXPECT_STREQ(crossing.text, kTexts.domain_rate_suspended.c_str());
    const ServiceState s = record("@dom.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_EQ(s.expires - s.since, 3600);
    EXPECT_NE(s.reason.find("(limits.domain_messages_per_hour = 4)"), std::string::npos) << s.reason;
    EXPECT_FALSE(record("c@dom.test").at(Service::send).suspended) << "the domain, not the mailbox";
    // Every mailbox of the domain is refused now, with the domain's text; other domains send.
    const auto other = check_send(h, "a@dom.test");
    EXPECT_EQ(other.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(other.scope, "domain");
    EXPECT_STREQ(other.text, kTexts.domain_rate_suspended.c_str());
    EXPECT_EQ(send(h, "a@else.test", {"x@else.test"}).verdict, MAILSUSPEND_ALLOW);
}

TEST_F(TriggerTest, DomainOffdomainRecipientsPerDayCountOnlyOtherDomains) {
    auto* h = open_handle();
    ASSERT_EQ(send(h, "a@off.test", {"x@other.test", "y@other.test", "z@off.test"}).verdict, MAILSUSPEND_ALLOW);
    ASSERT_EQ(send(h, "b@off.test", {"x@other.test", "y@other.test"}).verdict, MAILSUSPEND_ALLOW);
    ASSERT_EQ(send(h, "c@off.test", {"w@other.test", "v@other.test"}).verdict, MAILSUSPEND_ALLOW);
    EXPECT_FALSE(record("@off.test").at(Service::send).suspended) << "6 off-domain recipients: at the limit";
    const auto crossing = send(h, "a@off.test", {"u@other.test"});
    EXPECT_EQ(crossing.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(crossing.scope, "domain");
    const ServiceState s = record("@off.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_NE(s.reason.find("(limits.domain_offdomain_recipients_per_day = 6)"), std::string::npos) << s.reason;
}

TEST_F(TriggerTest, ALiftedDomainSuspensionStartsAfresh) {
    auto* h = open_handle();
    for (int i = 0; i < 5; ++i) send(h, "a@lift.test", {"x@lift.test"});
    ASSERT_TRUE(record("@lift.test").at(Service::send).suspended);
    ASSERT_EQ(run_cli({"unsuspend", "@lift.test", "--service", "send"}), 0) << cli_output;
    for (int i = 0; i < 4; ++i)
        EXPECT_EQ(send(h, "b@lift.test", {"x@lift.test"}).verdict, MAILSUSPEND_ALLOW) << "message " << i + 1;
}

TEST_F(TriggerTest, UnknownRecipientsPerHourSuspendTheSenderAtTheCrossingOne) {
    auto* h = open_handle();
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(mailsuspend_count_unknown_recipient(h, "a@spray.test", "192.0.2.10"), 0) << i + 1;
    EXPECT_FALSE(record("a@spray.test").at(Service::send).suspended) << "not one below the threshold";
    EXPECT_EQ(mailsuspend_count_unknown_recipient(h, "b@spray.test", "192.0.2.10"), 0) << "per mailbox";
    EXPECT_EQ(mailsuspend_count_unknown_recipient(h, "A@Spray.test", "192.0.2.10"), 1);
    const ServiceState s = record("a@spray.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_NE(s.reason.find("(limits.unknown_recipients_per_hour = 3)"), std::string::npos) << s.reason;
    const auto refused = check_send(h, "a@spray.test");
    EXPECT_EQ(refused.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(refused.scope, "mailbox");
    EXPECT_STREQ(refused.text, kTexts.unknown_recipients.c_str());
    // While suspended nothing more is counted or suspended.
    EXPECT_EQ(mailsuspend_count_unknown_recipient(h, "a@spray.test", "192.0.2.10"), 0);
    EXPECT_EQ(record("a@spray.test").auto_suspensions.size(), 1u);
}

class DomainExtendTest : public TriggerTest {
protected:
    std::string extra_config() const override {
        return "limits: { messages_per_day = 0; domain_messages_per_hour = 1; suspend_for = \"6s\"; };\n";
    }
};

TEST_F(DomainExtendTest, AnAttemptFromAnyMailboxExtendsTheDomainsSuspension) {
    auto* h = open_handle();
    ASSERT_EQ(send(h, "a@ext.test", {"x@ext.test"}).verdict, MAILSUSPEND_ALLOW);
    ASSERT_EQ(send(h, "a@ext.test", {"x@ext.test"}).verdict, MAILSUSPEND_DENY);
    const int64_t first = record("@ext.test").at(Service::send).expires;
    ASSERT_GT(first, 0);
    // A refused MAIL FROM (no recipients) of another mailbox a second or more later.
    ASSERT_TRUE(eventually([&] { return wall_now() >= first - 6 + 1; }));
    EXPECT_EQ(send(h, "b@ext.test", {}).verdict, MAILSUSPEND_DENY);
    EXPECT_GT(record("@ext.test").at(Service::send).expires, first);
    EXPECT_FALSE(record("b@ext.test").at(Service::send).suspended);
    EXPECT_EQ(record("@ext.test").auto_suspensions.size(), 1u);
}

class TriggersOffTest : public TriggerTest {
protected:
    std::string extra_config() const override { return "limits: { messages_per_day = 0; };\n"; }
};

TEST_F(TriggersOffTest, TheNewLimitsAreOffByDefault) {
    auto* h = open_handle();
    EXPECT_EQ(mailsuspend_counts_unknown_recipients(h), 0);
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(send(h, "a@quiet.test", {"x@other.test"}).verdict, MAILSUSPEND_ALLOW);
        ASSERT_EQ(mailsuspend_count_unknown_recipient(h, "a@quiet.test", nullptr), 0);
    }
    EXPECT_FALSE(record("@quiet.test").at(Service::send).suspended);
    EXPECT_FALSE(record("a@quiet.test").at(Service::send).suspended);
}

// The pure counting, with a synthetic clock: the domain's messages over a
// sliding hour, a crossing message taken back out of every count.
TEST_F(TriggerTest, DomainCountingUsesAnHourWindowAndTakesACrossingMessageBack) {
    const std::string own = dir + "/counting";
    std::filesystem::create_directory(own);
    std::string error;
    auto c = Counters::open(own, true, 16, error);
    ASSERT_TRUE(c) << error;
    Limits l;  // the defaults, and two messages an hour for the domain
    l.domain_messages_per_hour = 2;
    const int64_t t0 = int64_t{1000000} * 3600;  // on a bucket boundary
    MessageFacts m{"a@d.test", "", 1, 0};
    EXPECT_EQ(count_message(l, c.get(), m, t0).verdict, RateVerdict::allow);
    EXPECT_EQ(count_message(l, c.get(), m, t0 + 60).verdict, RateVerdict::allow);
    const RateDecision d = count_message(l, c.get(), m, t0 + 120);
    EXPECT_EQ(d.verdict, RateVerdict::crossed);
    EXPECT_TRUE(d.domain);
    EXPECT_STREQ(d.limit, "domain_messages_per_hour");
    EXPECT_EQ(c->total("a@d.test", CounterKind::messages, t0 + 120), 2) << "taken back from the mailbox's count";
    EXPECT_EQ(c->total("@d.test", CounterKind::domain_messages, t0 + 120), 2);
    // An hour after the first message it has left the window: one more passes.
    EXPECT_EQ(count_message(l, c.get(), m, t0 + 3600).verdict, RateVerdict::allow);
}

}  // namespace
