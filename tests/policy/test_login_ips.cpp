// limits.login_ips_per_day through the C API the Dovecot passdb calls
// (issue 16 item 2): counted after an allowed login, webmail hosts never;
// the crossing hands the suspension to the outbox without taking the
// writer lock, the next writer makes it with the action's services.
#include <filesystem>

#include "policy.hpp"
#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

const Messages kTexts;

class LoginIpsTest : public PolicyFixture {
protected:
    const char* action = "logins";
    std::string extra_config() const override {
        return std::string("limits: { login_ips_per_day = 2; login_ips_action = \"") + action +
               "\"; suspend_for = \"1h\"; };\n";
    }
    mailsuspend_result login(struct mailsuspend_handle* h, const char* user, const char* protocol, const char* ip) {
        mailsuspend_result r{};
        mailsuspend_check_login(h, user, protocol, ip, &r);
        if (r.verdict != MAILSUSPEND_DENY) mailsuspend_count_login(h, user, protocol, ip, &r);
        return r;
    }
    int outbox_entries() const {
        int n = 0;
        for (const auto& e : std::filesystem::directory_iterator(dir + "/store/outbox"))
            n += e.path().filename().string().rfind("suspend.", 0) == 0;
        return n;
    }
};

class LoginIpsSendTest : public LoginIpsTest {
protected:
    LoginIpsSendTest() { action = "send"; }
};

}  // namespace

TEST_F(LoginIpsTest, TheLoginThatCrossesIsRefusedAndTheSuspensionCoversTheLogins) {
    auto* h = open_handle();
    for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.1", "127.0.0.2", "127.0.0.2"})
        ASSERT_EQ(login(h, "a@dom.test", "imap", ip).verdict, MAILSUSPEND_ALLOW) << ip;
    ASSERT_EQ(login(h, "a@dom.test", "pop3", "192.0.2.2").verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(outbox_entries(), 0) << "at the limit, and the webmail host never counts";
    const auto crossing = login(h, "a@dom.test", "sieve", "192.0.2.3");
    EXPECT_EQ(crossing.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(crossing.service, "sieve");
    EXPECT_STREQ(crossing.text, kTexts.login_ips.c_str());
    EXPECT_EQ(outbox_entries(), 1);
    EXPECT_FALSE(record("a@dom.test").at(Service::imap).suspended) << "not made by the host process";
    // waiting in the outbox: refused already, from a known address too
    EXPECT_EQ(login(h, "a@dom.test", "imap", "192.0.2.1").verdict, MAILSUSPEND_DENY);
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    EXPECT_EQ(outbox_entries(), 0);
    const TargetRecord r = record("a@dom.test");
    for (Service s : {Service::imap, Service::pop3, Service::webmail, Service::sieve, Service::send,
                      Service::webmail_send}) {
        EXPECT_TRUE(r.at(s).suspended) << service_name(s);
        EXPECT_EQ(r.at(s).source, Source::rate);
        EXPECT_EQ(r.at(s).expires - r.at(s).since, 3600);
    }
    EXPECT_FALSE(r.at(Service::receive).suspended) << "receiving is never touched";
    EXPECT_NE(r.at(Service::send).reason.find("(limits.login_ips_per_day = 2)"), std::string::npos);
    const auto after = login(h, "a@dom.test", "imap", "192.0.2.1");
    EXPECT_EQ(after.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(after.text, kTexts.login_ips.c_str());
    mailsuspend_result send{};
    mailsuspend_check_send(h, "a@dom.test", "192.0.2.1", &send);
    EXPECT_EQ(send.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(send.text, kTexts.login_ips.c_str());
    EXPECT_EQ(login(h, "b@dom.test", "imap", "192.0.2.3").verdict, MAILSUSPEND_ALLOW) << "mailboxes count apart";
}

TEST_F(LoginIpsSendTest, ActionSendLetsTheLoginInAndSuspendsSendOnly) {
    auto* h = open_handle();
    for (const char* ip : {"192.0.2.1", "192.0.2.2"}) ASSERT_EQ(login(h, "a@dom.test", "imap", ip).verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(login(h, "a@dom.test", "imap", "192.0.2.3").verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(outbox_entries(), 1);
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    const TargetRecord r = record("a@dom.test");
    EXPECT_TRUE(r.at(Service::send).suspended);
    EXPECT_FALSE(r.at(Service::imap).suspended);
    EXPECT_EQ(login(h, "a@dom.test", "imap", "192.0.2.4").verdict, MAILSUSPEND_ALLOW);
    // lifted by the admin: the count starts afresh (two more new IPs pass)
    ASSERT_EQ(run_cli({"unsuspend", "a@dom.test", "--service", "send"}), 0) << cli_output;
    for (const char* ip : {"192.0.2.5", "192.0.2.6"})
        EXPECT_EQ(login(h, "a@dom.test", "imap", ip).verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(outbox_entries(), 0);
}
