// Issue 12 items 1, 3, 4 in the core: the writer lock is waited for with a
// bound, changes handed to the outbox are applied by the next writer with
// their audit line, the audit log is cut back when the journal fails, and
// the counters survive being truncated in place and are verified by check.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "counters.hpp"
#include "operations.hpp"
#include "outbox.hpp"
#include "policy.hpp"
#include "store.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

class HardeningTest : public ::testing::Test {
protected:
    TempDir dir;
    Config cfg;

    void SetUp() override {
        cfg.store_path = dir / "store";
        cfg.store_capacity = 16;
        cfg.counter_capacity = 64;
        cfg.read_group = "";
        cfg.write_group = "";
        cfg.audit_log = dir / "audit.log";
        std::string error;
        ASSERT_TRUE(StoreWriter::open(cfg, true, error)) << error;
        ASSERT_TRUE(create_outbox(cfg, error)) << error;
    }

    // Another open file description of the lock: flock conflicts with it
    // even inside this process.
    int hold_lock() {
        const int fd = ::open((cfg.store_path + "/lock").c_str(), O_RDWR | O_CLOEXEC);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::flock(fd, LOCK_EX), 0);
        return fd;
    }
};

TEST_F(HardeningTest, HostWaitIsBoundedAndSaysBusy) {
    const int held = hold_lock();
    LockWait wait;
    wait.timeout_ms = 50;
    std::string error;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(StoreWriter::open(cfg, false, error, &wait));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(wait.busy);
    EXPECT_LT(took, std::chrono::milliseconds(500));
    EXPECT_GE(took, std::chrono::milliseconds(45));
    EXPECT_NE(error.find("is held by pid " + std::to_string(::getpid())), std::string::npos) << error;
    ::close(held);
    LockWait again;
    again.timeout_ms = 50;
    EXPECT_TRUE(StoreWriter::open(cfg, false, error, &again)) << error;
    EXPECT_FALSE(again.busy);
}

TEST_F(HardeningTest, AdminWaitTellsWhoAndTimesOut) {
    cfg.admin_lock_timeout = 2;
    const int held = hold_lock();
    std::string told;
    LockWait wait;
    wait.waiting = [&](const std::string& holder) { told = holder; };
    std::string error;
    EXPECT_FALSE(StoreWriter::open(cfg, false, error, &wait));
    EXPECT_EQ(told, "pid " + std::to_string(::getpid()));
    EXPECT_NE(error.find("gave up after"), std::string::npos) << error;
    ::close(held);
}

TEST_F(HardeningTest, OutboxIsAppliedOnceWithItsAuditLine) {
    const std::string key = "alice@example.com";
    EXPECT_FALSE(outbox_holds_suspension(cfg, key));
    std::string error;
    // The send checks look into the outbox only while its counted suspensions are not 0.
    auto counters = Counters::open(cfg.store_path, true, 16, error);
    ASSERT_TRUE(counters) << error;
    EXPECT_EQ(counters->outbox_suspensions(), 0u);
    ASSERT_TRUE(outbox_put(cfg, {OutboxOp::rate_suspend, key, "6 messages within 24h", 1'900'000'000}, error,
                           counters.get())) << error;
    // A second crossing while pending keeps the first, and is not counted twice.
    ASSERT_TRUE(outbox_put(cfg, {OutboxOp::rate_suspend, key, "7 messages within 24h", 1'900'000'001}, error,
                           counters.get())) << error;
    EXPECT_EQ(counters->outbox_suspensions(), 1u);
    ASSERT_TRUE(outbox_put(cfg, {OutboxOp::extend, key, "", 1'900'000'002}, error, counters.get())) << error;
    EXPECT_EQ(counters->outbox_suspensions(), 1u) << "an extension is no suspension";
    EXPECT_TRUE(outbox_holds_suspension(cfg, key));
    EXPECT_FALSE(outbox_holds_suspension(cfg, "bob@example.com"));

    auto writer = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(writer) << error;
    std::vector<std::string> warnings, done;
    EXPECT_EQ(outbox_apply(cfg, *writer, warnings, &done), 2);  // opens <store>/counters itself
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    EXPECT_FALSE(outbox_holds_suspension(cfg, key));
    EXPECT_EQ(counters->outbox_suspensions(), 0u);
    TargetRecord r;
    ASSERT_TRUE(writer->get(key, r));
    EXPECT_TRUE(r.at(Service::send).suspended);
    EXPECT_EQ(r.at(Service::send).since, 1'900'000'000);
    EXPECT_NE(r.at(Service::send).reason.find("6 messages"), std::string::npos);
    const auto lines = read_lines(cfg.audit_log);
    ASSERT_EQ(lines.size(), 2u);  // the suspension, then its extension
    EXPECT_NE(lines[0].find("exim (outbox)"), std::string::npos) << lines[0];
    EXPECT_NE(lines[1].find("\"extend\""), std::string::npos) << lines[1];
    EXPECT_EQ(outbox_apply(cfg, *writer, warnings), 0);  // nothing left
}

TEST_F(HardeningTest, BadOutboxEntryIsSetAside) {
    write_file(cfg.store_path + "/outbox/suspend.0000000000000001", "{\"op\":\"rate-suspend\",\"key\":\"@example.com\",\"time\":1}");
    std::string error;
    auto writer = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(writer) << error;
    std::vector<std::string> warnings;
    EXPECT_EQ(outbox_apply(cfg, *writer, warnings), 0);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_TRUE(std::filesystem::exists(cfg.store_path + "/outbox/bad.suspend.0000000000000001"));
}

TEST_F(HardeningTest, AuditLineCutBackWhenJournalFails) {
    std::string error;
    auto writer = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(writer) << error;
    Actor root{0, "root"};
    const auto suspend = [&](const std::string& target, const std::string& reason = "") {
        Session session(cfg, *writer, root, 1'900'000'000);
        SuspendArgs a;
        a.target = target;
        a.reason = reason;
        a.services = 1u << static_cast<int>(Service::imap);
        EXPECT_TRUE(session.suspend(a).ok());
        std::vector<std::string> warnings;
        return session.commit(warnings);
    };
    // Within the table's capacity (a growth would checkpoint the journal away).
    for (int round = 0; round < 3; ++round)
        for (int i = 0; i < 10; ++i)
            ASSERT_TRUE(suspend("user" + std::to_string(i) + "@example.com", "round " + std::to_string(round)).ok());
    const auto journal = std::filesystem::file_size(cfg.store_path + "/journal");
    ASSERT_GT(journal, 1000u);  // well above one audit line (about 350 bytes)
    ASSERT_EQ(::truncate(cfg.audit_log.c_str(), 0), 0);
    // A file size limit the short audit log stays under and the journal
    // does not: the audit line is written, then the journal write fails.
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit saved {};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limit = saved;
    limit.rlim_cur = journal;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
    const Outcome o = suspend("erin@example.com");
    ::setrlimit(RLIMIT_FSIZE, &saved);
    EXPECT_FALSE(o.ok());
    EXPECT_NE(o.message.find("nothing changed: cannot write the journal: File too large"), std::string::npos)
        << o.message;
    EXPECT_EQ(std::filesystem::file_size(cfg.audit_log), 0u);  // its line was cut back
    EXPECT_EQ(std::filesystem::file_size(cfg.store_path + "/journal"), journal);
    TargetRecord r;
    bool exists = true;
    ASSERT_TRUE(writer->get("erin@example.com", r, &exists));
    EXPECT_FALSE(exists);
    std::vector<std::string> report;
    EXPECT_TRUE(writer->check(report));
}

TEST_F(HardeningTest, AuditFailureLeavesNothing) {
    // The audit log cannot be opened: nothing changes.
    cfg.audit_log = dir / "no-such-dir/audit.log";
    std::string error;
    auto writer = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(writer) << error;
    Session session(cfg, *writer, Actor{0, "root"}, 1'900'000'000);
    SuspendArgs a;
    a.target = "dave@example.com";
    a.services = 1u << static_cast<int>(Service::imap);
    ASSERT_TRUE(session.suspend(a).ok());
    std::vector<std::string> warnings;
    const Outcome o = session.commit(warnings);
    EXPECT_FALSE(o.ok());
    EXPECT_NE(o.message.find("nothing changed: the audit log cannot record it"), std::string::npos) << o.message;
    EXPECT_EQ(o.message.find("Success"), std::string::npos) << o.message;
    TargetRecord r;
    bool exists = true;
    ASSERT_TRUE(writer->get("dave@example.com", r, &exists));
    EXPECT_FALSE(exists);
}

TEST_F(HardeningTest, CountersTruncatedInPlaceCountNothingAndCheckSaysSo) {
    std::string error;
    ASSERT_TRUE(Counters::open(cfg.store_path, true, cfg.counter_capacity, error)) << error;
    auto counters = Counters::open(cfg.store_path, false, 0, error);
    ASSERT_TRUE(counters) << error;
    EXPECT_EQ(counters->add("alice@example.com", CounterKind::messages, 1, 1'900'000'000), 1);
    EXPECT_TRUE(Counters::verify(cfg.store_path).empty());
    const std::string path = cfg.store_path + "/counters";
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    ASSERT_EQ(::truncate(path.c_str(), 100), 0);
    // Pages past the end are gone: guarded, -1, never SIGBUS.
    EXPECT_EQ(counters->add("alice@example.com", CounterKind::messages, 1, 1'900'000'000), -1);
    EXPECT_EQ(counters->total("alice@example.com", CounterKind::messages, 1'900'000'000), -1);
    EXPECT_FALSE(counters->usable());
    EXPECT_TRUE(counters->replaced());
    const auto report = Counters::verify(cfg.store_path);
    ASSERT_EQ(report.size(), 1u);
    EXPECT_NE(report[0].find("truncated"), std::string::npos) << report[0];
}

TEST_F(HardeningTest, NewFilesAreFullyAllocated) {
    std::string error;
    ASSERT_TRUE(Counters::open(cfg.store_path, true, cfg.counter_capacity, error)) << error;
    for (const char* name : {"/store", "/counters"}) {
        struct stat st {};
        ASSERT_EQ(::stat((cfg.store_path + name).c_str(), &st), 0);
        EXPECT_GE(st.st_blocks * 512, st.st_size) << name << " is sparse";
    }
}

}  // namespace
