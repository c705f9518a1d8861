// The failed-share trigger (issue 16, item 2) through the C API the Exim
// module's event_action calls: delivery outcomes over
// limits.failed_share_percent suspend send of the mailbox, or of its domain
// (scope domain), with source rate, the limit in the reason and its own
// text; at the threshold, on retries and while suspended nothing happens.
#include "policy.hpp"
#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

const Messages kTexts;  // the built-in texts: the config below sets none

class FailedShareApiTest : public PolicyFixture {
protected:
    // Every volume limit off, so only the share can suspend.
    std::string extra_config() const override {
        return "limits: { messages_per_day = 0; recipients_per_message = 0; offdomain_recipients_per_day = 0;\n"
               "          offdomain_recipients_per_hour_per_ip = 0; failed_share_percent = 50;\n"
               "          failed_share_min_recipients = 4; suspend_for = \"1h\"; };\n";
    }
    int report(struct mailsuspend_handle* h, const char* sender, enum mailsuspend_outcome o, int first = 1,
               const char* recipient = "r@far.test") {
        return mailsuspend_count_delivery_outcome(h, sender, nullptr, recipient, o, first);
    }
    mailsuspend_result check_send(struct mailsuspend_handle* h, const char* sender) {
        mailsuspend_result r{};
        mailsuspend_check_send(h, sender, nullptr, &r);
        return r;
    }
};

}  // namespace

TEST_F(FailedShareApiTest, AMailboxOverTheShareIsSuspendedAtTheOutcomeThatTakesItOver) {
    auto* h = open_handle();
    EXPECT_EQ(mailsuspend_counts_delivery_outcomes(h), 1);
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_DELIVERED), 0);
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_DELIVERED), 0) << "2 of 4: at the threshold";
    EXPECT_FALSE(record("a@box.test").at(Service::send).suspended);
    // A retry's outcome counts nothing.
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED, 0), 0);
    EXPECT_FALSE(record("a@box.test").at(Service::send).suspended);
    EXPECT_EQ(report(h, "A@Box.test", MAILSUSPEND_OUTCOME_BOUNCED), 1) << "3 of 5";
    const ServiceState s = record("a@box.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_EQ(s.expires - s.since, 3600);
    EXPECT_NE(s.reason.find("3 of 5 remote recipients bounced or deferred within 1h "
                            "(limits.failed_share_percent = 50)"),
              std::string::npos)
        << s.reason;
    const auto refused = check_send(h, "a@box.test");
    EXPECT_EQ(refused.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(refused.scope, "mailbox");
    EXPECT_STREQ(refused.text, kTexts.failed_share.c_str());
    // While suspended nothing more is counted or suspended.
    EXPECT_EQ(report(h, "a@box.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_EQ(record("a@box.test").auto_suspensions.size(), 1u);
    EXPECT_FALSE(record("@box.test").at(Service::send).suspended);
}

TEST_F(FailedShareApiTest, ADomainOverTheShareIsSuspendedWithScopeDomain) {
    auto* h = open_handle();
    // Each mailbox below the minimum; the domain's four outcomes: 3 failed.
    report(h, "a@dom.test", MAILSUSPEND_OUTCOME_BOUNCED);
    report(h, "b@dom.test", MAILSUSPEND_OUTCOME_DELIVERED);
    report(h, "c@dom.test", MAILSUSPEND_OUTCOME_DEFERRED, 1, "r@slow.test");
    EXPECT_EQ(report(h, "c@dom.test", MAILSUSPEND_OUTCOME_BOUNCED), 1);
    const ServiceState s = record("@dom.test").at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_NE(s.reason.find("of the domain's mailboxes"), std::string::npos) << s.reason;
    EXPECT_FALSE(record("c@dom.test").at(Service::send).suspended) << "the domain, not the mailbox";
    const auto refused = check_send(h, "b@dom.test");
    EXPECT_EQ(refused.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(refused.scope, "domain");
    EXPECT_STREQ(refused.text, kTexts.failed_share.c_str());
}

TEST_F(FailedShareApiTest, ALiftStartsTheShareAfresh) {
    auto* h = open_handle();
    for (int i = 0; i < 4; ++i) report(h, "a@lift.test", MAILSUSPEND_OUTCOME_BOUNCED);
    ASSERT_TRUE(record("a@lift.test").at(Service::send).suspended);
    ASSERT_EQ(run_cli({"unsuspend", "a@lift.test", "--service", "send"}), 0) << cli_output;
    // The old bounces are forgotten, the mailbox's and (taken out of it when
    // the mailbox crossed) the domain's: three more are below the minimum.
    for (int i = 0; i < 3; ++i) EXPECT_EQ(report(h, "a@lift.test", MAILSUSPEND_OUTCOME_BOUNCED), 0) << i;
    EXPECT_FALSE(record("a@lift.test").at(Service::send).suspended);
    EXPECT_FALSE(record("@lift.test").at(Service::send).suspended);
}

class FailedShareOffTest : public FailedShareApiTest {
protected:
    std::string extra_config() const override { return "limits: { messages_per_day = 0; };\n"; }
};

TEST_F(FailedShareOffTest, OffByDefault) {
    auto* h = open_handle();
    EXPECT_EQ(mailsuspend_counts_delivery_outcomes(h), 0);
    for (int i = 0; i < 50; ++i) ASSERT_EQ(report(h, "a@quiet.test", MAILSUSPEND_OUTCOME_BOUNCED), 0);
    EXPECT_FALSE(record("a@quiet.test").at(Service::send).suspended);
    EXPECT_FALSE(record("@quiet.test").at(Service::send).suspended);
}
