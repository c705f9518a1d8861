// The C API the mail hosts call: verdicts, services, modes, texts, fail policy.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "mailsuspend/mailsuspend.h"
#include "ms_light.h"
#include "operations.hpp"
#include "store.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

struct LogLine {
    mailsuspend_log_level level;
    std::string text;
};

void collect(void* ctx, mailsuspend_log_level level, const char* msg) {
    static_cast<std::vector<LogLine>*>(ctx)->push_back({level, msg});
}

// Owns a handle.
struct Handle {
    mailsuspend_handle* ms = nullptr;
    const char* error = nullptr;
    std::vector<LogLine> log;

    explicit Handle(const std::string& config) {
        ms = mailsuspend_open(config.c_str(), collect, &log, &error);
    }
    ~Handle() { mailsuspend_close(&ms); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    mailsuspend_result login(const char* user, const char* protocol, const char* ip = "192.0.2.1") {
        mailsuspend_result r;
        std::memset(&r, 0x55, sizeof r);  // the call must fill every field
        mailsuspend_check_login(ms, user, protocol, ip, &r);
        return r;
    }
    mailsuspend_result send(const char* sender, const char* ip = "192.0.2.1") {
        mailsuspend_result r;
        std::memset(&r, 0x55, sizeof r);
        mailsuspend_check_send(ms, sender, ip, &r);
        return r;
    }
    mailsuspend_result receive(const char* rcpt, long age = 0) {
        mailsuspend_result r;
        std::memset(&r, 0x55, sizeof r);
        mailsuspend_check_receive(ms, rcpt, age, &r);
        return r;
    }
};

const char kWebmailIp[] = "127.0.0.2";
const std::string kRest =
    "webmail: { hosts = [ \"127.0.0.2\", \"2001:db8:1::/64\" ]; };\n"
    "messages: { login_denied = \"LOGIN-DENIED\"; send_suspended = \"SEND-SUSPENDED\";\n"
    "            rate_suspended = \"RATE-SUSPENDED\"; receive_rejected = \"RECEIVE-REJECTED\";\n"
    "            unavailable = \"UNAVAILABLE\"; };\n";

class CapiTest : public ::testing::Test {
protected:
    TempDir dir;
    ConfigText text{"", "delivery: { flush_command = \"\"; fail_queued_command = \"\"; queue_expiry = \"1h\"; };",
                    kRest};
    std::string config_path;
    Config cfg;

    void SetUp() override { configure(); }

    void configure() {
        config_path = write_config(dir.path(), text);
        cfg = load_ok(config_path);
    }

    void init() {
        std::string error;
        auto w = StoreWriter::open(cfg, true, error);
        ASSERT_TRUE(w) << error;
    }

    // Applies a change through a Session at the real clock (the C API reads it).
    void change(const std::function<Outcome(Session&)>& body) {
        std::string error;
        auto w = StoreWriter::open(cfg, true, error);
        ASSERT_TRUE(w) << error;
        Session s(cfg, *w, Actor{0, "root"}, wall_now());
        Outcome o = body(s);
        ASSERT_TRUE(o.ok()) << o.message;
        std::vector<std::string> warnings;
        ASSERT_TRUE(s.commit(warnings).ok());
    }

    void suspend(const std::string& target, const std::string& services, const std::string& reason = "",
                 std::function<void(SuspendArgs&)> tweak = {}) {
        SuspendArgs a;
        a.target = target;
        std::string error;
        a.services = parse_service_list(services, error).value_or(0);
        a.reason = reason;
        if (tweak) tweak(a);
        change([&](Session& s) { return s.suspend(a); });
    }
};

void expect_clean(const mailsuspend_result& r) {
    const std::size_t len = strnlen(r.text, MAILSUSPEND_TEXT_MAX);
    ASSERT_LT(len, static_cast<std::size_t>(MAILSUSPEND_TEXT_MAX)) << "text not terminated";
    for (std::size_t i = 0; i < len; ++i)
        EXPECT_GE(static_cast<unsigned char>(r.text[i]), 0x20u) << "control octet at " << i << ": " << r.text;
}

}  // namespace

TEST_F(CapiTest, MissingConfigIsFailOpen) {
    Handle h(dir / "missing.conf");
    ASSERT_NE(h.ms, nullptr);
    ASSERT_NE(h.error, nullptr);
    EXPECT_NE(std::string(h.error).find("missing.conf"), std::string::npos) << h.error;
    const auto r = h.login("a@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.fail_policy, 1);
    EXPECT_STREQ(r.scope, "none");
    const auto s = h.send("a@example.com");
    EXPECT_EQ(s.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(s.fail_policy, 1);
    EXPECT_EQ(mailsuspend_is_webmail_host(h.ms, kWebmailIp), 0);
}

TEST_F(CapiTest, MalformedConfigIsReportedAndFailOpen) {
    write_file(config_path, "store: { fail_policy = \"closed\"; bogus = 1; };\n");
    Handle h(config_path);
    ASSERT_NE(h.error, nullptr);
    EXPECT_NE(std::string(h.error).find("store.bogus"), std::string::npos) << h.error;
    const auto r = h.login("a@example.com", "pop3");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << "an unreadable config falls back to the built-in (open) policy";
    EXPECT_EQ(r.fail_policy, 1);
}

TEST_F(CapiTest, MissingStoreClosedDenies) {
    text.store_extra = "fail_policy = \"closed\";";
    configure();
    Handle h(config_path);
    ASSERT_NE(h.error, nullptr);
    EXPECT_NE(std::string(h.error).find("mailsuspend init"), std::string::npos) << h.error;
    auto r = h.login("a@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_EQ(r.fail_policy, 1);
    EXPECT_STREQ(r.text, "UNAVAILABLE") << "closed with no store: no suspension text";
    r = h.receive("a@example.com");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_QUEUE) << "closed never loses mail: it holds it";
    EXPECT_EQ(r.fail_policy, 1);
    r = h.send("a@example.com");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_EQ(r.fail_policy, 1);
}

TEST_F(CapiTest, MissingStoreOpenAllows) {
    Handle h(config_path);
    ASSERT_NE(h.error, nullptr);
    for (const char* proto : {"imap", "pop3", "sieve"}) {
        const auto r = h.login("a@example.com", proto);
        EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << proto;
        EXPECT_EQ(r.fail_policy, 1) << proto;
    }
    const auto r = h.receive("a@example.com");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_DELIVER);
}

TEST_F(CapiTest, LogsOnceWhileDegradedAndAgainWhenBack) {
    text.store_extra = "fail_policy = \"closed\";";
    configure();
    Handle h(config_path);
    for (int i = 0; i < 200; ++i) h.login("a@example.com", "imap");
    ASSERT_EQ(h.log.size(), 1u) << "one line while degraded, not one per lookup";
    EXPECT_EQ(h.log[0].level, MAILSUSPEND_LOG_ERROR);
    EXPECT_NE(h.log[0].text.find("unavailable"), std::string::npos) << h.log[0].text;
    EXPECT_NE(h.log[0].text.find("closed"), std::string::npos) << h.log[0].text;
    EXPECT_EQ(h.log[0].text.find_first_of("\r\n"), std::string::npos);

    init();
    suspend("b@example.com", "imap");
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the handle retries once a second
    auto r = h.login("a@example.com", "imap");
    EXPECT_EQ(r.fail_policy, 0);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    r = h.login("b@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    ASSERT_EQ(h.log.size(), 2u);
    EXPECT_EQ(h.log[1].level, MAILSUSPEND_LOG_INFO);
    EXPECT_NE(h.log[1].text.find("available again"), std::string::npos) << h.log[1].text;
    for (int i = 0; i < 50; ++i) h.login("a@example.com", "imap");
    EXPECT_EQ(h.log.size(), 2u);
}

TEST_F(CapiTest, LoginServices) {
    init();
    suspend("a@example.com", "imap", "overdue");
    Handle h(config_path);
    EXPECT_EQ(h.error, nullptr) << h.error;
    auto r = h.login("A+x@Example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.service, "imap");
    EXPECT_STREQ(r.scope, "mailbox");
    EXPECT_EQ(r.fail_policy, 0);
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_DELIVER);
    EXPECT_STREQ(r.text, "LOGIN-DENIED (overdue)");
    r = h.login("a@example.com", "pop3");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_STREQ(r.service, "pop3");
    EXPECT_STREQ(r.scope, "none");
    EXPECT_STREQ(r.text, "");
    r = h.login("b@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
}

// What the passdb hands a session for its re-checks (ms_light.h): the
// service and key mailsuspend_check_login looks up, and the store.
TEST_F(CapiTest, SessionTicketNamesTheServiceKeyAndStore) {
    init();
    Handle h(config_path);
    char buf[MS_TICKET_MAX];
    ASSERT_EQ(mailsuspend_session_ticket(h.ms, "Bob+news@Example.COM", "imap", "192.0.2.1", buf, sizeof buf), 1);
    EXPECT_EQ(std::string(buf), "1 0 bob@example.com " + cfg.store_path);
    ASSERT_EQ(mailsuspend_session_ticket(h.ms, "bob@example.com", "pop3", kWebmailIp, buf, sizeof buf), 1);
    EXPECT_EQ(std::string(buf), "1 2 bob@example.com " + cfg.store_path) << "webmail host: the webmail service";
    ASSERT_EQ(mailsuspend_session_ticket(h.ms, "bob@example.com", "sieve", nullptr, buf, sizeof buf), 1);
    EXPECT_EQ(std::string(buf), "1 6 bob@example.com " + cfg.store_path);
    EXPECT_EQ(mailsuspend_session_ticket(h.ms, "bob@example.com", "lmtp", nullptr, buf, sizeof buf), 0);
    EXPECT_EQ(mailsuspend_session_ticket(h.ms, "", "imap", nullptr, buf, sizeof buf), 0);
    EXPECT_EQ(mailsuspend_session_ticket(h.ms, "bob@example.com", "imap", nullptr, buf, 10), 0);
    EXPECT_EQ(mailsuspend_session_ticket(nullptr, "bob@example.com", "imap", nullptr, buf, sizeof buf), 0);
}

TEST_F(CapiTest, WebmailHostLoginIsWebmailService) {
    init();
    suspend("a@example.com", "imap");
    suspend("w@example.com", "webmail");
    Handle h(config_path);
    auto r = h.login("a@example.com", "imap", kWebmailIp);
    EXPECT_STREQ(r.service, "webmail");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << "imap suspended, webmail not";
    r = h.login("w@example.com", "imap", kWebmailIp);
    EXPECT_STREQ(r.service, "webmail");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    r = h.login("w@example.com", "pop3", "::ffff:127.0.0.2");
    EXPECT_STREQ(r.service, "webmail");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    r = h.login("w@example.com", "imap", "2001:db8:1::7");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    r = h.login("w@example.com", "imap", "127.0.0.3");
    EXPECT_STREQ(r.service, "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    r = h.login("w@example.com", "imap", nullptr);
    EXPECT_STREQ(r.service, "imap");
    EXPECT_EQ(mailsuspend_is_webmail_host(h.ms, kWebmailIp), 1);
    EXPECT_EQ(mailsuspend_is_webmail_host(h.ms, "127.0.0.3"), 0);
    EXPECT_EQ(mailsuspend_is_webmail_host(h.ms, nullptr), 0);
    EXPECT_EQ(mailsuspend_is_webmail_host(h.ms, "garbage"), 0);
}

// Who "the sender" is: the SMTP AUTH id first; else the envelope sender of a
// local submission (no client IP) or of a webmail.hosts client; else nobody.
TEST_F(CapiTest, SendingIdentity) {
    init();
    Handle h(config_path);
    const char* auth = "user@example.com";
    const char* sender = "other@example.com";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, auth, sender, "192.0.2.9"), auth);
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, auth, "", "192.0.2.9"), auth) << "AUTH, bounce";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, "", sender, nullptr), sender) << "local submission";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, nullptr, sender, ""), sender) << "local submission";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, nullptr, sender, kWebmailIp), sender);
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, nullptr, sender, "192.0.2.9"), nullptr) << "inbound";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, nullptr, "", nullptr), nullptr) << "bounce";
    EXPECT_EQ(mailsuspend_sending_identity(h.ms, nullptr, nullptr, kWebmailIp), nullptr);
    EXPECT_EQ(mailsuspend_sending_identity(nullptr, nullptr, sender, kWebmailIp), nullptr)
        << "no handle: no webmail hosts known";
    EXPECT_EQ(mailsuspend_sending_identity(nullptr, auth, sender, nullptr), auth);
}

TEST_F(CapiTest, SieveAndLmtp) {
    init();
    suspend("a@example.com", "all");
    Handle h(config_path);
    auto r = h.login("a@example.com", "sieve");
    EXPECT_STREQ(r.service, "sieve");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    for (const char* proto : {"lmtp", "lda", "doveadm", "submission", ""}) {
        r = h.login("a@example.com", proto);
        EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << proto;
        EXPECT_STREQ(r.service, "none") << proto;
    }
    mailsuspend_result n;
    mailsuspend_check_login(h.ms, "a@example.com", nullptr, nullptr, &n);
    EXPECT_EQ(n.verdict, MAILSUSPEND_ALLOW);
}

TEST_F(CapiTest, SendChecksWebmailSendFromWebmailHost) {
    init();
    suspend("a@example.com", "webmail_send", "web abuse");
    Handle h(config_path);
    auto r = h.send("a@example.com", kWebmailIp);
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.service, "webmail_send");
    EXPECT_STREQ(r.text, "SEND-SUSPENDED (web abuse)");
    r = h.send("a@example.com", "192.0.2.9");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_STREQ(r.service, "send");
    r = h.send("a@example.com", nullptr);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
}

TEST_F(CapiTest, SendSuspendedEverywhere) {
    init();
    suspend("a@example.com", "send", "", [](SuspendArgs& a) { a.fail_queued = true; });
    Handle h(config_path);
    for (const char* ip : {kWebmailIp, "192.0.2.9"}) {
        const auto r = h.send("a@example.com", ip);
        EXPECT_EQ(r.verdict, MAILSUSPEND_DENY) << ip;
        EXPECT_STREQ(r.service, "send") << ip;
        EXPECT_STREQ(r.text, "SEND-SUSPENDED") << "no reason, nothing appended";
        EXPECT_EQ(r.fail_queued, 1);
    }
}

TEST_F(CapiTest, RateSuspensionGivesRateText) {
    init();
    suspend("a@example.com", "send", "600 messages in 24h", [](SuspendArgs& a) { a.source = Source::rate; });
    suspend("s@example.com", "send", "", [](SuspendArgs& a) { a.source = Source::spam; });
    Handle h(config_path);
    auto r = h.send("a@example.com");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.text, "RATE-SUSPENDED");
    EXPECT_EQ(r.fail_queued, 0);
    r = h.send("s@example.com");
    EXPECT_STREQ(r.text, "RATE-SUSPENDED");
}

TEST_F(CapiTest, ReceiveModes) {
    text.delivery = "delivery: { flush_command = \"\"; fail_queued_command = \"\"; queue_expiry = \"1h\"; "
                    "default_mode = \"reject\"; };";
    configure();
    init();
    suspend("default@example.com", "receive", "secret reason");
    for (const char* m : {"deliver", "discard", "reject", "queue"})
        suspend(std::string(m) + "@example.com", "receive", "", [&](SuspendArgs& a) { a.mode = parse_mode(m); });
    Handle h(config_path);
    auto r = h.receive("default@example.com");
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_REJECT) << "the config's default_mode";
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.service, "receive");
    EXPECT_STREQ(r.text, "RECEIVE-REJECTED") << "a reason is never told to senders";
    EXPECT_EQ(h.receive("deliver@example.com").mode, MAILSUSPEND_MODE_DELIVER);
    EXPECT_EQ(h.receive("discard@example.com").mode, MAILSUSPEND_MODE_DISCARD);
    EXPECT_EQ(h.receive("reject@example.com").mode, MAILSUSPEND_MODE_REJECT);
    EXPECT_EQ(h.receive("queue@example.com").mode, MAILSUSPEND_MODE_QUEUE);
    EXPECT_EQ(h.receive("queue@example.com", 3599).mode, MAILSUSPEND_MODE_QUEUE);
    EXPECT_EQ(h.receive("queue@example.com", 3600).mode, MAILSUSPEND_MODE_EXPIRED) << "past queue_expiry";
    r = h.receive("other@example.com");
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_DELIVER);
}

TEST_F(CapiTest, DomainSuspensionAndModes) {
    init();
    suspend("@example.com", "imap,receive", "domain unpaid", [](SuspendArgs& a) { a.mode = DeliveryMode::discard; });
    change([](Session& s) { return s.set_mode("own@example.com", DeliveryMode::reject); });
    Handle h(config_path);
    auto r = h.login("anyone@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.scope, "domain");
    EXPECT_STREQ(r.text, "LOGIN-DENIED (domain unpaid)");
    r = h.receive("anyone@example.com");
    EXPECT_STREQ(r.scope, "domain");
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_DISCARD) << "the domain's mode";
    EXPECT_EQ(h.receive("own@example.com").mode, MAILSUSPEND_MODE_REJECT) << "the mailbox's own mode wins";
    EXPECT_EQ(h.login("anyone@example.org", "imap").verdict, MAILSUSPEND_ALLOW);
    // The domain target itself.
    r = h.login("@example.com", "imap");
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
}

TEST_F(CapiTest, IncludeReasonOff) {
    text.rest = "webmail: { hosts = [ \"127.0.0.2\" ]; };\n"
                "messages: { include_reason = false; login_denied = \"NO\"; send_suspended = \"NOSEND\"; };\n";
    configure();
    init();
    suspend("a@example.com", "imap,send", "the reason");
    Handle h(config_path);
    EXPECT_STREQ(h.login("a@example.com", "imap").text, "NO");
    EXPECT_STREQ(h.send("a@example.com").text, "NOSEND");
}

// A configured message starts the reply as written (the config reader
// checked it: UTF-8, no control character, at most 400 octets); the reason
// that follows comes from the store and is cut to what the reply holds.
TEST_F(CapiTest, ConfiguredMessageStartsTheReplyAsWritten) {
    const std::string message = "Konto gesperrt \u2013 bitte an den Support wenden. " + std::string(340, 'x');
    text.rest = "messages: { login_denied = \"" + message + "\"; };\n";
    configure();
    init();
    suspend("a@example.com", "imap", std::string(200, 'r'));
    Handle h(config_path);
    const std::string reply = h.login("a@example.com", "imap").text;
    const std::string written = "Konto gesperrt \xE2\x80\x93 bitte an den Support wenden. " + std::string(340, 'x');
    ASSERT_EQ(reply.substr(0, written.size()), written);
    EXPECT_EQ(reply.size(), std::size_t{MAILSUSPEND_TEXT_MAX - 1}) << "cut to the reply's room";
    EXPECT_EQ(reply.substr(written.size()), " (" + std::string(MAILSUSPEND_TEXT_MAX - 1 - written.size() - 2, 'r'))
        << "the reason fills the rest (no room for its ')')";
}

TEST_F(CapiTest, ExpiredSuspensionAllowsAtOnce) {
    init();
    {
        // Written directly: expired a second ago, never swept.
        std::string error;
        auto w = StoreWriter::open(cfg, false, error);
        ASSERT_TRUE(w) << error;
        TargetRecord r;
        r.key = "a@example.com";
        r.at(Service::imap) = ServiceState{true, false, false, wall_now() - 100, wall_now() - 1,
                                           Source::admin, ""};
        r.at(Service::pop3) = ServiceState{true, false, false, wall_now() - 100, wall_now() + 3600,
                                           Source::admin, ""};
        std::vector<Change> c{{r}};
        ASSERT_NE(w->commit(c, error), 0u) << error;
    }
    Handle h(config_path);
    EXPECT_EQ(h.login("a@example.com", "imap").verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(h.login("a@example.com", "pop3").verdict, MAILSUSPEND_DENY);
}

TEST_F(CapiTest, TextNeverHasLineBreaks) {
    init();
    {
        // A reason with CR/LF can only come from a damaged or foreign writer:
        // the text is cleaned all the same.
        std::string error;
        auto w = StoreWriter::open(cfg, false, error);
        ASSERT_TRUE(w) << error;
        TargetRecord r;
        r.key = "a@example.com";
        for (Service s : {Service::imap, Service::send, Service::receive})
            r.at(s) = ServiceState{true, false, false, wall_now(), 0, Source::admin,
                                   "x\r\n250 OK\r\n" + std::string(900, 'y')};
        std::vector<Change> c{{r}};
        ASSERT_NE(w->commit(c, error), 0u) << error;
    }
    Handle h(config_path);
    const auto login = h.login("a@example.com", "imap");
    EXPECT_EQ(login.verdict, MAILSUSPEND_DENY);
    expect_clean(login);
    EXPECT_EQ(std::string(login.text).rfind("LOGIN-DENIED (x??250 OK??", 0), 0u) << login.text;
    expect_clean(h.send("a@example.com"));
    expect_clean(h.receive("a@example.com"));
}

TEST_F(CapiTest, CheckServiceByName) {
    init();
    suspend("a@example.com", "webmail_send");
    Handle h(config_path);
    mailsuspend_result r;
    mailsuspend_check_service(h.ms, "a@example.com", "webmail_send", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.service, "webmail_send");
    mailsuspend_check_service(h.ms, "a@example.com", "imap", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    mailsuspend_check_service(h.ms, "a@example.com", "bogus", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_STREQ(r.service, "none");
    mailsuspend_check_service(h.ms, "a@example.com", nullptr, nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
}

// Issue 12, item 2: a local part that can be no mailbox key still has a
// domain, whose suspension applies to it.
TEST_F(CapiTest, UnparseableLocalPartFallsBackToItsDomain) {
    configure();
    init();
    suspend("@example.org", "receive");
    Handle h(config_path);
    for (const char* odd : {"a b@example.org", "\"a b+x\"@Example.ORG", "a\x01@example.org",
                            "\"\"@example.org"}) {
        mailsuspend_result r{};
        mailsuspend_check_receive(h.ms, odd, 0, &r);
        EXPECT_EQ(r.verdict, MAILSUSPEND_DENY) << odd;
        EXPECT_STREQ(r.scope, "domain") << odd;
    }
    mailsuspend_result r{};
    mailsuspend_check_receive(h.ms, "a b@example.com", 0, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
}

TEST_F(CapiTest, InvalidAndBareUsers) {
    text.rest += "address: { default_domain = \"example.com\"; };\n";
    configure();
    init();
    suspend("a@example.com", "imap");
    Handle h(config_path);
    EXPECT_EQ(h.login("a", "imap").verdict, MAILSUSPEND_DENY) << "bare name takes default_domain";
    for (const char* bad : {"", "a b@example.com", "\"a b\"@example.com", "a@-x-.com"}) {
        const auto r = h.login(bad, "imap");
        EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << bad;
        EXPECT_EQ(r.fail_policy, 0) << bad;
    }
    // Issue 12, item 2: a quoted local part is its mailbox (unquoted, tag dropped).
    for (const char* same : {"\"a\"@example.com", "\"A+x y\"@example.com", "a+x y@example.com"})
        EXPECT_EQ(h.login(same, "imap").verdict, MAILSUSPEND_DENY) << same;
    mailsuspend_result r;
    mailsuspend_check_login(h.ms, nullptr, "imap", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    const std::string huge(5000, 'a');
    EXPECT_EQ(h.login((huge + "@example.com").c_str(), "imap").verdict, MAILSUSPEND_ALLOW);
}

TEST_F(CapiTest, Messages) {
    Handle h(config_path);
    char buf[MAILSUSPEND_TEXT_MAX];
    ASSERT_EQ(mailsuspend_message(h.ms, "rate_suspended", buf, sizeof buf), 0);
    EXPECT_STREQ(buf, "RATE-SUSPENDED");
    ASSERT_EQ(mailsuspend_message(h.ms, "recipients_per_message", buf, sizeof buf), 0);
    EXPECT_NE(std::string(buf).find("Too many recipients"), std::string::npos) << buf;
    char small[4];
    ASSERT_EQ(mailsuspend_message(h.ms, "unavailable", small, sizeof small), 0);
    EXPECT_STREQ(small, "UNA");
    EXPECT_EQ(mailsuspend_message(h.ms, "nope", buf, sizeof buf), -1);
    EXPECT_EQ(mailsuspend_message(nullptr, "unavailable", buf, sizeof buf), -1);
}

TEST_F(CapiTest, CloseIsSafe) {
    mailsuspend_handle* ms = mailsuspend_open(config_path.c_str(), nullptr, nullptr, nullptr);
    ASSERT_NE(ms, nullptr);
    mailsuspend_result r;
    mailsuspend_check_login(ms, "a@example.com", "imap", nullptr, &r);  // no logger: no crash
    EXPECT_EQ(r.fail_policy, 1);
    mailsuspend_close(&ms);
    EXPECT_EQ(ms, nullptr);
    mailsuspend_close(&ms);
    mailsuspend_close(nullptr);
}

// mailsuspend_open returns NULL only when out of memory; a host that passes
// that NULL on (or a NULL result) must get an answer, not a crash.
TEST(CapiNull, NullHandleAndResultDoNotCrash) {
    mailsuspend_result r;
    std::memset(&r, 0x55, sizeof r);
    mailsuspend_check_login(nullptr, "a@example.com", "imap", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.fail_policy, 1);
    std::memset(&r, 0x55, sizeof r);
    mailsuspend_check_send(nullptr, "a@example.com", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.fail_policy, 1);
    std::memset(&r, 0x55, sizeof r);
    mailsuspend_check_receive(nullptr, "a@example.com", 0, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.mode, MAILSUSPEND_MODE_DELIVER);
    EXPECT_EQ(r.fail_policy, 1);
    std::memset(&r, 0x55, sizeof r);
    mailsuspend_check_service(nullptr, "a@example.com", "imap", nullptr, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(r.fail_policy, 1);
    TempDir dir;
    mailsuspend_handle* ms = mailsuspend_open((dir / "none.conf").c_str(), nullptr, nullptr, nullptr);
    mailsuspend_check_login(ms, "a@example.com", "imap", nullptr, nullptr);
    mailsuspend_check_send(ms, "a@example.com", nullptr, nullptr);
    mailsuspend_check_receive(ms, "a@example.com", 0, nullptr);
    mailsuspend_check_service(ms, "a@example.com", "imap", nullptr, nullptr);
    mailsuspend_close(&ms);
}

// Dovecot's processes live long: a store deleted and initialised again must
// be picked up without a restart (checked at most once a second).
TEST_F(CapiTest, FollowsAStoreCreatedAgain) {
    init();
    suspend("old@example.com", "imap");
    Handle h(config_path);
    ASSERT_EQ(h.login("old@example.com", "imap").verdict, MAILSUSPEND_DENY);
    std::filesystem::remove_all(cfg.store_path);
    init();
    suspend("new@example.com", "imap");
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    EXPECT_EQ(h.login("new@example.com", "imap").verdict, MAILSUSPEND_DENY);
    EXPECT_EQ(h.login("old@example.com", "imap").verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(h.login("new@example.com", "imap").fail_policy, 0);
}

// The core, not the host, says which SMTP refusal it is (RFC 3463 codes).
TEST_F(CapiTest, RefusalsCarryTheirEnhancedStatus) {
    configure();
    init();
    suspend("s@example.com", "send,imap");
    suspend("r@example.com", "receive", "", [](SuspendArgs& a) { a.mode = DeliveryMode::reject; });
    Handle h(config_path);
    EXPECT_STREQ(h.send("s@example.com").status, "5.7.13");
    EXPECT_STREQ(h.receive("r@example.com").status, "5.2.1");
    EXPECT_STREQ(h.login("s@example.com", "imap").status, "") << "not an SMTP refusal";
    EXPECT_STREQ(h.send("free@example.com").status, "") << "nothing refused";
}
