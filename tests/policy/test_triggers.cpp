// Domain-level limits, the unknown-recipient and the failed-share triggers
// (issue 16, items 2 and 3) through the C API the Exim module calls: each
// fires at its threshold and not below it, suspends send of the right target (the
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
    // One remote recipient's delivery outcome (no client IP: a delivery process reports it).
    int report_outcome(struct mailsuspend_handle* h, const char* sender, enum mailsuspend_outcome o, int first = 1,
                       const char* recipient = "r@far.test") {
        return mailsuspend_count_delivery_outcome(h, sender, nullptr, recipient, o, first);
    }
    mailsuspend_result check_send(struct mailsuspend_handle* h, const char* sender) {
        mailsuspend_result r{};
        mailsuspend_check_send(h, sender, "192.0.2.10", &r);
        return r;
    }
    // sender is refused at MAIL FROM, with scope and text.
    void expect_refused(struct mailsuspend_handle* h, const char* sender, const char* scope, const std::string& text) {
        const auto r = check_send(h, sender);
        EXPECT_EQ(r.verdict, MAILSUSPEND_DENY) << sender;
        EXPECT_STREQ(r.scope, scope) << sender;
        EXPECT_STREQ(r.text, text.c_str()) << sender;
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
    expect_refused(h, "a@dom.test", "domain", kTexts.domain_rate_suspended);
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
    expect_refused(h, "a@spray.test", "mailbox", kTexts.unknown_recipients);
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

// ---- limits.failed_share_percent: delivery outcomes the Exim event_action reports

class FailedShareApiTest : public TriggerTest {
protected:
    // Every volume limit off, so only the share can suspend.
    std::string extra_config() const override {
        return "limits: { messages_per_day = 0; recipients_per_message = 0; offdomain_recipients_per_day = 0;\n"
               "          offdomain_recipients_per_hour_per_ip = 0; failed_share_percent = 50;\n"
               "          failed_share_min_recipients = 4; suspend_for = \"1h\"; };\n";
    }
};

TEST_F(FailedShareApiTest, AMailboxOverTheShareIsSuspendedAtTheOutcomeThatTakesItOver) {
    auto* h = open_handle();
    EXPECT_EQ(mailsuspend_counts_delivery_outcomes(h), 1);
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_DELIVERED), 0);
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_DELIVERED), 0) << "2 of 4: at the threshold";
    EXPECT_FALSE(record("a@box.test").at(Service::send).suspended);
    // A retry's outcome counts nothing.
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED, 0), 0);
    EXPECT_FALSE(record("a@box.test").at(Service::send).suspended);
    EXPECT_EQ(report_outcome(h, "A@Box.test", MAILSUSPEND_OUTCOME_BOUNCED), 1) << "3 of 5";
    const ServiceState s = record("a@box.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_EQ(s.expires - s.since, 3600);
    EXPECT_NE(s.reason.find("3 of 5 remote recipients bounced or deferred within 1h "
                            "(limits.failed_share_percent = 50)"),
              std::string::npos)
        << s.reason;
    expect_refused(h, "a@box.test", "mailbox", kTexts.failed_share);
    // While suspended nothing more is counted or suspended.
    EXPECT_EQ(report_outcome(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(record("a@box.test").auto_suspensions.size(), 1u);
    EXPECT_FALSE(record("@box.test").at(Service::send).suspended);
}

TEST_F(FailedShareApiTest, ADomainOverTheShareIsSuspendedWithScopeDomain) {
    auto* h = open_handle();
    // Each mailbox below the minimum; the domain's four outcomes: 3 failed.
    report_outcome(h, "a@dom.test", MAILSUSPEND_OUTCOME_BOUNCED);
    report_outcome(h, "b@dom.test", MAILSUSPEND_OUTCOME_DELIVERED);
    report_outcome(h, "c@dom.test", MAILSUSPEND_OUTCOME_DEFERRED, 1, "r@slow.test");
    EXPECT_EQ(report_outcome(h, "c@dom.test", MAILSUSPEND_OUTCOME_BOUNCED), 1);
    const ServiceState s = record("@dom.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_NE(s.reason.find("of the domain's mailboxes"), std::string::npos) << s.reason;
    EXPECT_FALSE(record("c@dom.test").at(Service::send).suspended) << "the domain, not the mailbox";
    expect_refused(h, "b@dom.test", "domain", kTexts.failed_share);
}

TEST_F(FailedShareApiTest, ALiftStartsTheShareAfresh) {
    auto* h = open_handle();
    for (int i = 0; i < 4; ++i) report_outcome(h, "a@lift.test", MAILSUSPEND_OUTCOME_BOUNCED);
    ASSERT_TRUE(record("a@lift.test").at(Service::send).suspended);
    ASSERT_EQ(run_cli({"unsuspend", "a@lift.test", "--service", "send"}), 0) << cli_output;
    // The old bounces are forgotten, the mailbox's and (taken out of it when
    // the mailbox crossed) the domain's: three more are below the minimum.
    for (int i = 0; i < 3; ++i) EXPECT_EQ(report_outcome(h, "a@lift.test", MAILSUSPEND_OUTCOME_BOUNCED), 0) << i;
    EXPECT_FALSE(record("a@lift.test").at(Service::send).suspended);
    EXPECT_FALSE(record("@lift.test").at(Service::send).suspended);
}

TEST_F(TriggersOffTest, TheFailedShareIsOffByDefault) {
    auto* h = open_handle();
    EXPECT_EQ(mailsuspend_counts_delivery_outcomes(h), 0);
    for (int i = 0; i < 50; ++i) ASSERT_EQ(report_outcome(h, "a@quiet.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_FALSE(record("a@quiet.test").at(Service::send).suspended);
    EXPECT_FALSE(record("@quiet.test").at(Service::send).suspended);
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
