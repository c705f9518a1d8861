// Rate limits through the C API the Exim module calls
// (mailsuspend_count_message): refusal, automatic send suspension with
// source rate and expiry, exact counts under concurrent processes, other
// mailboxes unaffected, lift after expiry, extension, escalation.
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>

#include "counters.hpp"
#include "policy.hpp"
#include "policy_fixture.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

constexpr const char* kRateText =
    "Permanent Failure: Your ability to send new mail has been suspended as a high volume of suspicious "
    "mail has been sent from your account recently. Please contact your IT administrator";

class RateTest : public PolicyFixture {
protected:
    mailsuspend_result send(struct mailsuspend_handle* h, const char* sender, std::vector<const char*> rcpts,
                            const char* ip = "192.0.2.10") {
        mailsuspend_result r{};
        mailsuspend_count_message(h, sender, ip, rcpts.data(), static_cast<unsigned>(rcpts.size()), &r);
        return r;
    }
    // Limits for the policy function alone: per mailbox messages and per IP
    // off-domain recipients (0 = off); the per-mailbox off-domain limit off.
    static Limits limits_of(int64_t messages_per_day, int64_t offdomain_per_hour_per_ip) {
        Limits l;
        l.messages_per_day = messages_per_day;
        l.offdomain_recipients_per_day = 0;
        l.offdomain_recipients_per_hour_per_ip = offdomain_per_hour_per_ip;
        return l;
    }
    int64_t counted(const std::string& key, CounterKind kind) {
        std::string error;
        auto c = Counters::open(dir + "/store", false, 0, error);
        EXPECT_TRUE(c) << error;
        return c ? c->total(key, kind, wall_now()) : -1;
    }
};

TEST_F(RateTest, CrossingMessagesPerDayIsRefusedAndSuspendsSendWithSourceRateAndExpiry) {
    auto* h = open_handle();
    for (int i = 0; i < 5; ++i) {
        const auto r = send(h, "a@example.com", {"b@example.com"});
        ASSERT_EQ(r.verdict, MAILSUSPEND_ALLOW) << "message " << i + 1 << ": " << r.text;
    }
    const auto crossing = send(h, "A@Example.com", {"b@example.com"});
    EXPECT_EQ(crossing.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(crossing.text, kRateText);
    EXPECT_STREQ(crossing.service, "send");
    EXPECT_STREQ(crossing.scope, "mailbox");

    const TargetRecord rec = record("a@example.com");
    const ServiceState& s = rec.at(Service::send);
    EXPECT_TRUE(s.suspended);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_FALSE(s.locked);
    EXPECT_EQ(s.expires - s.since, 3600) << "expires after limits.suspend_for";
    EXPECT_NE(s.reason.find("6 messages within 24h (limits.messages_per_day = 5)"), std::string::npos) << s.reason;
    EXPECT_EQ(rec.auto_suspensions.size(), 1u);
    // Only send: the user still logs in and receives.
    EXPECT_FALSE(rec.at(Service::imap).suspended);
    EXPECT_FALSE(rec.at(Service::receive).suspended);
    // The refused message was not counted.
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 5);
    // The ordinary send check now refuses with the same text.
    mailsuspend_result check{};
    mailsuspend_check_send(h, "a@example.com", "192.0.2.10", &check);
    EXPECT_EQ(check.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(check.text, kRateText);
    // Audited as exim.
    const std::string audit = read_file(dir + "/audit.log");
    EXPECT_NE(audit.find("\"action\":\"suspend\""), std::string::npos) << audit;
    EXPECT_NE(audit.find("\"name\":\"exim\""), std::string::npos) << audit;
}

TEST_F(RateTest, OtherMailboxesAreUnaffected) {
    auto* h = open_handle();
    for (int i = 0; i < 6; ++i) send(h, "a@example.com", {"b@example.com"});
    ASSERT_TRUE(record("a@example.com").at(Service::send).suspended);
    for (int i = 0; i < 5; ++i) {
        const auto r = send(h, "c@example.com", {"b@example.com"});
        EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << r.text;
    }
    EXPECT_FALSE(record("c@example.com").at(Service::send).suspended);
    EXPECT_FALSE(record("@example.com").at(Service::send).suspended) << "never the whole domain";
}

TEST_F(RateTest, TooManyRecipientsIsRefusedWithItsTextNotCountedNotSuspended) {
    auto* h = open_handle();
    const auto r = send(h, "a@example.com", {"x@other.test", "y@other.test", "z@other.test", "w@other.test"});
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.text, config().messages.recipients_per_message.c_str());
    EXPECT_FALSE(record("a@example.com").at(Service::send).suspended);
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 0);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 0);
    EXPECT_EQ(send(h, "a@example.com", {"x@other.test", "y@other.test", "z@other.test"}).verdict, MAILSUSPEND_ALLOW);
}

TEST_F(RateTest, OffDomainRecipientsPerDayCountOnlyOtherDomains) {
    auto* h = open_handle();
    // Same domain (any case, sub-address) is not off-domain.
    EXPECT_EQ(send(h, "a@example.com", {"b@EXAMPLE.com", "c+tag@example.com", "x@other.test"}).verdict,
              MAILSUSPEND_ALLOW);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 1);
    EXPECT_EQ(send(h, "a@example.com", {"x@other.test", "y@sub.example.com", "z@third.test"}, nullptr).verdict,
              MAILSUSPEND_ALLOW);  // a subdomain is another domain
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 4);
    EXPECT_EQ(send(h, "a@example.com", {"p@other.test", "q@other.test", "r@other.test"}, nullptr).verdict,
              MAILSUSPEND_ALLOW);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 7);
    const auto r = send(h, "a@example.com", {"s@other.test", "t@other.test"}, nullptr);  // 9 > 8
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.text, kRateText);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 7) << "refused recipients are not counted";
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 3) << "nor the refused message";
    const ServiceState s = record("a@example.com").at(Service::send);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_NE(s.reason.find("offdomain_recipients_per_day"), std::string::npos) << s.reason;
}

// Issue 12, item 7: the IP limit is shared; the mailbox whose message crosses
// it is not the one that filled it.  The IP is throttled, nobody suspended.
TEST_F(RateTest, PerIpLimitThrottlesTheIpAndSuspendsNobody) {
    auto* h = open_handle();
    EXPECT_EQ(send(h, "a@example.com", {"x@other.test", "y@other.test", "z@other.test"}).verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(send(h, "b@example.com", {"x@other.test", "y@other.test", "z@other.test"}).verdict, MAILSUSPEND_ALLOW);
    EXPECT_EQ(counted("192.0.2.10", CounterKind::ip_offdomain_rcpts), 6);
    // Another IP has its own count.
    EXPECT_EQ(send(h, "c@example.com", {"x@other.test"}, "198.51.100.1").verdict, MAILSUSPEND_ALLOW);
    const auto r = send(h, "c@example.com", {"x@other.test"});  // 7 > 6 from 192.0.2.10
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.status, "4.7.1");
    EXPECT_STREQ(r.scope, "ip");
    EXPECT_NE(std::string(r.text).find("network address"), std::string::npos) << r.text;
    EXPECT_FALSE(record("c@example.com").at(Service::send).suspended);
    EXPECT_EQ(counted("192.0.2.10", CounterKind::ip_offdomain_rcpts), 6) << "the refused message is not counted";
    EXPECT_EQ(counted("c@example.com", CounterKind::offdomain_rcpts), 1) << "only the other IP's message";
    EXPECT_FALSE(record("a@example.com").at(Service::send).suspended);
    EXPECT_FALSE(record("b@example.com").at(Service::send).suspended);
}

TEST_F(RateTest, WebmailHostAndLocalSubmissionsAreNotCountedPerIp) {
    auto* h = open_handle();
    for (const char* sender : {"a@example.com", "b@example.com", "c@example.com"})
        EXPECT_EQ(send(h, sender, {"x@other.test", "y@other.test", "z@other.test"}, "127.0.0.2").verdict,
                  MAILSUSPEND_ALLOW);
    EXPECT_EQ(counted("127.0.0.2", CounterKind::ip_offdomain_rcpts), 0);
}

TEST_F(RateTest, AnAdminSuspensionAnswersLikeCheckSendAndIsNotExtendedOrCounted) {
    ASSERT_EQ(run_cli({"suspend", "a@example.com", "--service", "send", "--reason", "unpaid", "--for", "1h"}), 0)
        << cli_output;
    auto* h = open_handle();
    const auto r = send(h, "a@example.com", {"x@other.test"});
    mailsuspend_result check{};
    mailsuspend_check_send(h, "a@example.com", "192.0.2.10", &check);
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_STREQ(r.text, check.text);
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 0);
    const ServiceState s = record("a@example.com").at(Service::send);
    EXPECT_EQ(s.source, Source::admin);
    EXPECT_EQ(s.expires - s.since, 3600);
}

TEST_F(RateTest, ALiftedRateSuspensionStartsAfreshSoTheNextMessagePasses) {
    auto* h = open_handle();
    for (int i = 0; i < 6; ++i) send(h, "a@example.com", {"x@other.test"});
    ASSERT_TRUE(record("a@example.com").at(Service::send).suspended);
    send(h, "b@example.com", {"x@other.test"});
    // The end user's self-service unblock (allowed once per interval for source rate).
    ASSERT_EQ(run_cli({"unsuspend", "a@example.com", "--self-service"}), 0) << cli_output;
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 0);
    EXPECT_EQ(counted("a@example.com", CounterKind::offdomain_rcpts), 0);
    EXPECT_EQ(counted("b@example.com", CounterKind::messages), 1) << "other mailboxes keep their counts";
    EXPECT_EQ(counted("192.0.2.10", CounterKind::ip_offdomain_rcpts), 6) << "the IP's count is shared: kept";
    const auto r = send(h, "a@example.com", {"b@example.com"});
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << r.text;
    EXPECT_EQ(record("a@example.com").auto_suspensions.size(), 1u);
}

// Several Exim processes at once, each with its own handle: exactly the
// limit goes through, the rest is refused, and send is suspended once.
TEST_F(RateTest, CountsAreExactWithConcurrentProcesses) {
    constexpr int kProcs = 4, kEach = 3;  // 12 attempts against a limit of 5
    struct Shared {
        std::atomic<int> ready{0}, allowed{0}, denied{0};
    };
    void* m = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    auto* shared = new (m) Shared();
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            struct mailsuspend_handle* h = mailsuspend_open(config_path.c_str(), nullptr, nullptr, nullptr);
            const char* rcpt[] = {"b@example.com"};
            shared->ready.fetch_add(1);
            while (shared->ready.load() < kProcs) {
            }
            for (int i = 0; i < kEach; ++i) {
                mailsuspend_result r{};
                mailsuspend_count_message(h, "a@example.com", "192.0.2.10", rcpt, 1, &r);
                (r.verdict == MAILSUSPEND_ALLOW ? shared->allowed : shared->denied).fetch_add(1);
            }
            mailsuspend_close(&h);
            ::_exit(0);
        }
        pids.push_back(pid);
    }
    for (pid_t pid : pids) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(shared->allowed.load(), 5);
    EXPECT_EQ(shared->denied.load(), kProcs * kEach - 5);
    EXPECT_EQ(counted("a@example.com", CounterKind::messages), 5);
    const TargetRecord rec = record("a@example.com");
    EXPECT_TRUE(rec.at(Service::send).suspended);
    EXPECT_EQ(rec.auto_suspensions.size(), 1u) << "suspended once, however many processes crossed";
    ::munmap(m, sizeof(Shared));
}

// A larger run straight on the policy function: many processes, a higher
// limit; the number allowed is exactly the limit.
TEST_F(RateTest, PolicyCountIsExactUnderHeavyConcurrency) {
    constexpr int kProcs = 6, kEach = 400;
    const Limits limits = limits_of(1000, 0);
    std::atomic<int>* allowed = static_cast<std::atomic<int>*>(
        ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (allowed) std::atomic<int>(0);
    const int64_t now = wall_now();
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            std::string error;
            auto c = Counters::open(dir + "/store", false, 0, error);
            if (!c) ::_exit(1);
            MessageFacts f;
            f.sender = "heavy@example.com";
            f.recipients = 1;
            for (int i = 0; i < kEach; ++i)
                if (count_message(limits, c.get(), f, now).verdict == RateVerdict::allow) allowed->fetch_add(1);
            ::_exit(0);
        }
        pids.push_back(pid);
    }
    for (pid_t pid : pids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(allowed->load(), 1000);
    std::string error;
    auto c = Counters::open(dir + "/store", false, 0, error);
    EXPECT_EQ(c->total("heavy@example.com", CounterKind::messages, now), 1000);
    ::munmap(allowed, sizeof(std::atomic<int>));
}

// A message that crosses a shared limit must not make another sender's
// message cross with it: on a shared client IP, a big message over
// offdomain_recipients_per_hour_per_ip is refused, and small messages of
// other mailboxes from that IP, still well inside the limit, all pass.
TEST_F(RateTest, ACrossingMessageNeverMakesAnotherSenderCross) {
    constexpr int kBigProcs = 3, kSmall = 150;
    const Limits limits = limits_of(0, 500);
    const int64_t now = wall_now();
    std::string error;
    auto c = Counters::open(dir + "/store", true, 64, error);
    ASSERT_TRUE(c) << error;
    ASSERT_EQ(c->add("192.0.2.77", CounterKind::ip_offdomain_rcpts, 300, now), 300);  // earlier traffic
    struct Shared {
        std::atomic<int> refused_small{0}, big_allowed{0}, stop{0};
    };
    auto* sh = static_cast<Shared*>(
        ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (sh) Shared;
    auto facts = [](const char* sender, uint32_t offdomain) {
        MessageFacts f;
        f.sender = sender;
        f.client_ip = "192.0.2.77";
        f.recipients = offdomain;
        f.offdomain = offdomain;
        return f;
    };
    std::vector<pid_t> pids;
    for (int p = 0; p < kBigProcs; ++p) {
        if (const pid_t pid = ::fork(); pid == 0) {  // 300 + 250 > 500: always refused
            std::string e;
            auto mine = Counters::open(dir + "/store", false, 0, e);
            if (!mine) ::_exit(1);
            const MessageFacts f = facts("big@example.com", 250);
            while (!sh->stop.load())
                if (count_message(limits, mine.get(), f, now).verdict == RateVerdict::allow) sh->big_allowed++;
            ::_exit(0);
        } else {
            pids.push_back(pid);
        }
    }
    {  // small messages of another mailbox, spread over the big ones' run
        std::string e;
        auto mine = Counters::open(dir + "/store", false, 0, e);
        ASSERT_TRUE(mine) << e;
        const MessageFacts f = facts("small@example.com", 1);
        for (int i = 0; i < kSmall; ++i) {
            if (count_message(limits, mine.get(), f, now).verdict != RateVerdict::allow) sh->refused_small++;
            ::usleep(200);
        }
        sh->stop.store(1);
    }
    for (pid_t pid : pids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    }
    EXPECT_EQ(sh->refused_small.load(), 0) << "300 + 150 is inside the limit of 500";
    EXPECT_EQ(sh->big_allowed.load(), 0);
    EXPECT_EQ(c->total("192.0.2.77", CounterKind::ip_offdomain_rcpts, now), 300 + kSmall);
    ::munmap(sh, sizeof(Shared));
}

class ShortRateTest : public RateTest {
protected:
    std::string extra_config() const override {
        return "limits: { messages_per_day = 1; recipients_per_message = 0; offdomain_recipients_per_day = 0;\n"
               "          offdomain_recipients_per_hour_per_ip = 0; suspend_for = \"2s\"; extend_on_attempt = false; };\n";
    }
};

TEST_F(ShortRateTest, SuspensionLiftsAfterExpiryAndSweepRecordsIt) {
    auto* h = open_handle();
    ASSERT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_ALLOW);
    ASSERT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_DENY);
    mailsuspend_result check{};
    mailsuspend_check_send(h, "a@example.com", nullptr, &check);
    ASSERT_EQ(check.verdict, MAILSUSPEND_DENY);
    EXPECT_TRUE(eventually([&] {
        mailsuspend_check_send(h, "a@example.com", nullptr, &check);
        return check.verdict == MAILSUSPEND_ALLOW;
    })) << "not lifted after limits.suspend_for";
    // Expired, not yet swept: still stored; the sweep lifts and audits it.
    EXPECT_TRUE(record("a@example.com").at(Service::send).suspended);
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    EXPECT_FALSE(record("a@example.com").at(Service::send).suspended);
    EXPECT_NE(read_file(dir + "/audit.log").find("\"action\":\"expire\""), std::string::npos);
}

// suspend_for is long enough that the suspension cannot expire during the
// test's one-second wait (times are whole seconds), yet an extension would be
// due after that second (step = max(1 s, suspend_for / 10) = 1 s).
class NoExtendRateTest : public RateTest {
protected:
    std::string extra_config() const override {
        return "limits: { messages_per_day = 1; recipients_per_message = 0; offdomain_recipients_per_day = 0;\n"
               "          offdomain_recipients_per_hour_per_ip = 0; suspend_for = \"10s\"; extend_on_attempt = false; };\n";
    }
};

TEST_F(NoExtendRateTest, WithoutExtendOnAttemptAttemptsDoNotMoveTheExpiry) {
    auto* h = open_handle();
    send(h, "a@example.com", {"b@example.com"});
    ASSERT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_DENY);
    const int64_t expires = record("a@example.com").at(Service::send).expires;
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    EXPECT_EQ(send(h, "a@example.com", {}).verdict, MAILSUSPEND_DENY);
    EXPECT_EQ(record("a@example.com").at(Service::send).expires, expires);
}

class ExtendRateTest : public RateTest {
protected:
    std::string extra_config() const override {
        return "limits: { messages_per_day = 1; suspend_for = \"6s\"; extend_on_attempt = true; };\n";
    }
};

TEST_F(ExtendRateTest, AttemptsWhileRateSuspendedExtendTheSuspension) {
    auto* h = open_handle();
    send(h, "a@example.com", {"b@example.com"});
    ASSERT_EQ(send(h, "a@example.com", {"b@example.com"}).verdict, MAILSUSPEND_DENY);
    const int64_t first = record("a@example.com").at(Service::send).expires;
    // An attempt a second or more later (a refused MAIL FROM: no recipients yet) moves the expiry.
    ASSERT_TRUE(eventually([&] { return wall_now() >= first - 6 + 1; }));
    const auto r = send(h, "a@example.com", {});
    EXPECT_EQ(r.verdict, MAILSUSPEND_DENY);
    const ServiceState s = record("a@example.com").at(Service::send);
    EXPECT_GT(s.expires, first);
    EXPECT_EQ(s.source, Source::rate);
    EXPECT_EQ(record("a@example.com").auto_suspensions.size(), 1u) << "an extension is not a new suspension";
    EXPECT_NE(read_file(dir + "/audit.log").find("\"action\":\"extend\""), std::string::npos);
}

// Escalation with the policy functions and chosen times.
class EscalationTest : public PolicyFixture {};

TEST_F(EscalationTest, AfterEscalateAfterAutomaticSuspensionsWithin30DaysTheNextIsLockedWithoutExpiry) {
    const Config cfg = config();
    std::string error;
    Actor exim{0, "exim"};
    int64_t t = 1'800'000'000;
    std::vector<std::string> warnings;
    for (int n = 1; n <= 4; ++n) {
        auto w = StoreWriter::open(cfg, false, error);
        ASSERT_TRUE(w) << error;
        AutoSuspension out;
        const Outcome o = suspend_automatically(cfg, *w, exim, "a@example.com", Source::rate, "test", t, out, warnings);
        ASSERT_TRUE(o.ok()) << o.message;
        ASSERT_TRUE(out.suspended_now);
        TargetRecord r;
        ASSERT_TRUE(w->get("a@example.com", r));
        const ServiceState& s = r.at(Service::send);
        if (n <= 3) {
            EXPECT_FALSE(s.locked) << "suspension " << n;
            EXPECT_EQ(s.expires, t + 3600) << "suspension " << n;
        } else {
            EXPECT_TRUE(s.locked) << "the 4th within 30 days (escalate_after = 3)";
            EXPECT_EQ(s.expires, 0);
            EXPECT_EQ(out.expires, 0);
        }
        t += 2 * 86400;  // the previous one has expired by then
    }
    // The locked one: self-service and a plain unsuspend are refused (exit 3).
    EXPECT_EQ(run_cli({"unsuspend", "a@example.com", "--self-service"}), 3) << cli_output;
}

TEST_F(EscalationTest, SuspensionsOlderThan30DaysDoNotEscalate) {
    const Config cfg = config();
    std::string error;
    Actor exim{0, "exim"};
    int64_t t = 1'800'000'000;
    std::vector<std::string> warnings;
    for (int n = 1; n <= 4; ++n) {
        auto w = StoreWriter::open(cfg, false, error);
        ASSERT_TRUE(w) << error;
        AutoSuspension out;
        ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "a@example.com", Source::rate, "t", t, out, warnings).ok());
        EXPECT_FALSE(out.locked) << "suspension " << n;
        t += 11 * 86400;  // never more than 2 within 30 days before the next
    }
}

TEST_F(EscalationTest, ExtensionMovesExpiryOnlyForRateAndOnlyOncePerStep) {
    const Config cfg = config();
    std::string error;
    Actor exim{0, "exim"};
    const int64_t t = 1'800'000'000;
    std::vector<std::string> warnings;
    auto w = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(w) << error;
    AutoSuspension out;
    ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "a@example.com", Source::rate, "t", t, out, warnings).ok());
    TargetRecord r;
    w->get("a@example.com", r);
    EXPECT_FALSE(extension_due(cfg, r.at(Service::send), t + 30)) << "less than a minute later";
    EXPECT_TRUE(extension_due(cfg, r.at(Service::send), t + 60));
    bool extended = false;
    ASSERT_TRUE(extend_rate_suspension(cfg, *w, exim, "a@example.com", t + 600, extended, warnings).ok());
    EXPECT_TRUE(extended);
    w->get("a@example.com", r);
    EXPECT_EQ(r.at(Service::send).expires, t + 600 + 3600);
    // A spam suspension has no expiry to move.
    ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "s@example.com", Source::spam, "t", t, out, warnings).ok());
    w->get("s@example.com", r);
    EXPECT_FALSE(extension_due(cfg, r.at(Service::send), t + 600));
}

// limits.action and spam.action: the automatic suspension holds the mail
// instead of refusing it, each by its own key.
TEST_F(EscalationTest, ActionHoldMarksTheAutomaticSuspensionOfItsSourceOnly) {
    Config cfg = config();
    cfg.spam_action = SendAction::hold;  // limits.action stays "refuse"
    std::string error;
    Actor exim{0, "exim"};
    std::vector<std::string> warnings;
    auto w = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(w) << error;
    AutoSuspension out;
    const int64_t t = 1'800'000'000;
    ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "r@example.com", Source::rate, "t", t, out, warnings).ok());
    ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "s@example.com", Source::spam, "t", t, out, warnings).ok());
    TargetRecord r;
    ASSERT_TRUE(w->get("r@example.com", r));
    EXPECT_FALSE(r.at(Service::send).hold);
    ASSERT_TRUE(w->get("s@example.com", r));
    EXPECT_TRUE(r.at(Service::send).hold);
    cfg.limits.action = SendAction::hold;
    ASSERT_TRUE(suspend_automatically(cfg, *w, exim, "q@example.com", Source::rate, "t", t, out, warnings).ok());
    ASSERT_TRUE(w->get("q@example.com", r));
    EXPECT_TRUE(r.at(Service::send).hold);
}

TEST(OffDomain, RuleIsDomainEqualityAfterNormalisation) {
    AddressRules rules;
    EXPECT_FALSE(is_offdomain("a@example.com", "b@example.com", rules));
    EXPECT_FALSE(is_offdomain("a@example.com", "B@EXAMPLE.COM.", rules));
    EXPECT_TRUE(is_offdomain("a@example.com", "b@sub.example.com", rules));
    EXPECT_TRUE(is_offdomain("a@example.com", "b@example.org", rules));
    EXPECT_FALSE(is_offdomain("a@example.com", "\"quoted+x y\"@example.com", rules)) << "a quoted mailbox is one";
    EXPECT_TRUE(is_offdomain("a@example.com", "\"quoted name\"@example.com", rules)) << "not normalisable: off-domain";
    EXPECT_FALSE(is_offdomain("a@xn--bcher-kva.example", "b@bücher.example", rules)) << "IDN compared in A-labels";
}

}  // namespace

// fleet.counters = "fleet": the other nodes' share (set by the fleet agent)
// counts against every limit; the message that would cross is refused and
// not counted, and without fleet_shares the share is ignored.
TEST_F(RateTest, FleetSharesCountAgainstTheLimit) {
    const Limits limits = limits_of(10, 0);
    const int64_t now = wall_now();
    std::string error;
    auto c = Counters::open(dir + "/store", true, 64, error);
    ASSERT_TRUE(c) << error;
    const uint64_t hour = static_cast<uint64_t>(now / 3600);
    ASSERT_TRUE(c->set_buckets("spread@example.com", fleet_share(CounterKind::messages), {{hour, 6}, {hour - 1, 1}}, now));
    MessageFacts f;
    f.sender = "spread@example.com";
    f.recipients = 1;
    f.fleet_shares = true;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(count_message(limits, c.get(), f, now).verdict, RateVerdict::allow) << i;
    const RateDecision d = count_message(limits, c.get(), f, now);
    EXPECT_EQ(d.verdict, RateVerdict::crossed);
    EXPECT_EQ(d.total, 11) << "7 elsewhere, 3 here, and this one";
    EXPECT_EQ(c->total("spread@example.com", CounterKind::messages, now), 3) << "the crossing message is not counted";
    f.fleet_shares = false;
    EXPECT_EQ(count_message(limits, c.get(), f, now).verdict, RateVerdict::allow) << "a node on its own";
    // A share already past the limit refuses the first message here too.
    ASSERT_TRUE(c->set_buckets("other@example.com", fleet_share(CounterKind::messages), {{hour, 25}}, now));
    f.sender = "other@example.com";
    f.fleet_shares = true;
    EXPECT_EQ(count_message(limits, c.get(), f, now).verdict, RateVerdict::crossed);
    EXPECT_EQ(c->total("other@example.com", CounterKind::messages, now), 0);
}
