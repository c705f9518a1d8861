// The metrics counters files (common/store/metrics.hpp) and the C API that
// counts into them: layout, add/read, files that are not ours, concurrency.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "mailsuspend/mailsuspend.h"
#include "metrics.hpp"
#include "test_util.hpp"

namespace mailsuspend::test {
namespace {

using metrics::HostClass;

std::string created(const TempDir& dir, HostClass c) {
    std::string error;
    EXPECT_TRUE(metrics::create(dir.path(), c, static_cast<gid_t>(-1), error)) << error;
    return metrics::path_of(dir.path(), c);
}

uint64_t value_at(const std::string& path, int slot) {
    std::string error;
    auto snapshot = metrics::read(path, error);
    EXPECT_TRUE(snapshot) << error;
    return snapshot ? (*snapshot)[slot] : ~uint64_t{0};
}

TEST(Metrics, CreateMakesAZeroedFileOfTheLayout) {
    TempDir dir;
    const std::string path = created(dir, HostClass::dovecot);
    EXPECT_EQ(path, dir.path() + "/metrics-dovecot");
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), metrics::kFileSize);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    std::string error;
    auto snapshot = metrics::read(path, error);
    ASSERT_TRUE(snapshot) << error;
    for (uint64_t v : *snapshot) EXPECT_EQ(v, 0u);
}

TEST(Metrics, AddsAndSetsAreReadBack) {
    TempDir dir;
    const std::string path = created(dir, HostClass::exim);
    std::string error;
    auto w = metrics::Writer::open(path, error);
    ASSERT_TRUE(w) << error;
    EXPECT_TRUE(w->add(metrics::kSpamReports));
    EXPECT_TRUE(w->add(metrics::kSpamReports, 4));
    EXPECT_TRUE(w->set(metrics::kLastSweep, 1700000000));
    EXPECT_FALSE(w->add(metrics::kMetricSlots));  // out of the layout: refused
    EXPECT_FALSE(w->add(-1));
    EXPECT_EQ(value_at(path, metrics::kSpamReports), 5u);
    EXPECT_EQ(value_at(path, metrics::kLastSweep), 1700000000u);
}

TEST(Metrics, CountsSurviveReopeningAndCreateKeepsThem) {
    TempDir dir;
    const std::string path = created(dir, HostClass::exim);
    std::string error;
    metrics::Writer::open(path, error)->add(metrics::kReceive + 2, 3);
    created(dir, HostClass::exim);  // init run again: the counts stay
    metrics::Writer::open(path, error)->add(metrics::kReceive + 2);
    EXPECT_EQ(value_at(path, metrics::kReceive + 2), 4u);
}

TEST(Metrics, BadMagicIsRefusedAndReplacedByCreate) {
    TempDir dir;
    const std::string path = created(dir, HostClass::dovecot);
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "NOTMAGIC", 8, 0), 8);
    ::close(fd);
    std::string error;
    EXPECT_FALSE(metrics::Writer::open(path, error));
    EXPECT_NE(error.find("layout"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(metrics::read(path, error));
    EXPECT_NE(error.find(path), std::string::npos) << error;
    created(dir, HostClass::dovecot);
    EXPECT_TRUE(metrics::Writer::open(path, error)) << error;
}

TEST(Metrics, ShortOrMissingFilesAreRefusedWithoutACrash) {
    TempDir dir;
    const std::string path = created(dir, HostClass::dovecot);
    ASSERT_EQ(::truncate(path.c_str(), 100), 0);
    std::string error;
    EXPECT_FALSE(metrics::Writer::open(path, error));
    EXPECT_NE(error.find("size 100"), std::string::npos) << error;
    EXPECT_FALSE(metrics::read(path, error));
    ASSERT_EQ(::truncate(path.c_str(), 0), 0);
    EXPECT_FALSE(metrics::Writer::open(path, error));
    EXPECT_FALSE(metrics::Writer::open(dir / "missing", error));
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;
    EXPECT_FALSE(metrics::Writer::open(dir.path(), error));  // a directory
}

// A member of the file's group truncates it under a host's mapping: the next
// add faults, and the guard turns that into "not counted", not a dead host.
TEST(Metrics, TruncatedUnderTheMappingFailsTheAddNotTheProcess) {
    TempDir dir;
    const std::string path = created(dir, HostClass::dovecot);
    std::string error;
    auto w = metrics::Writer::open(path, error);
    ASSERT_TRUE(w) << error;
    ASSERT_TRUE(w->add(metrics::kLoginDenied));
    ASSERT_EQ(::truncate(path.c_str(), 0), 0);
    EXPECT_FALSE(w->add(metrics::kLoginDenied));
    EXPECT_FALSE(w->set(metrics::kLastSweep, 1));
}

TEST(Metrics, OverwrittenInPlaceCountsNothing) {
    TempDir dir;
    const std::string path = created(dir, HostClass::exim);
    std::string error;
    auto w = metrics::Writer::open(path, error);
    ASSERT_TRUE(w) << error;
    ASSERT_TRUE(w->add(metrics::kSendRefused));
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "garbage!", 8, 0), 8);  // the magic
    ::close(fd);
    EXPECT_FALSE(w->add(metrics::kSendRefused));
    EXPECT_FALSE(w->set(metrics::kLastSweep, 1));
}

TEST(Metrics, ConcurrentAddsFromSeveralProcessesAreExact) {
    TempDir dir;
    const std::string path = created(dir, HostClass::exim);
    constexpr int kProcesses = 6, kAdds = 200000;
    std::vector<pid_t> children;
    for (int p = 0; p < kProcesses; ++p) {
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            std::string error;
            auto w = metrics::Writer::open(path, error);  // each its own mapping
            int ok = w ? 0 : 1;
            for (int i = 0; w && i < kAdds; ++i) ok |= w->add(metrics::kSendRefused) ? 0 : 1;
            ::_exit(ok);
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(value_at(path, metrics::kSendRefused), uint64_t{kProcesses} * kAdds);
}

// The C API counts a host's events into its class's file only.
TEST(Metrics, CountEventGoesToTheHostsFile) {
    TempDir dir;
    const std::string conf = write_config(dir.path());
    const std::string store = dir / "store";
    std::filesystem::create_directory(store);
    std::string create_error;
    ASSERT_TRUE(metrics::create(store, HostClass::dovecot, static_cast<gid_t>(-1), create_error)) << create_error;
    ASSERT_TRUE(metrics::create(store, HostClass::exim, static_cast<gid_t>(-1), create_error)) << create_error;
    const char* error = nullptr;
    mailsuspend_handle* ms = mailsuspend_open(conf.c_str(), nullptr, nullptr, &error);
    ASSERT_NE(ms, nullptr);
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_LOGIN_DENIED, "imap");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_LOGIN_DENIED, "pop3");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_SESSION_ENDED, "imap");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED, "discard");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_RECEIVED, "no-such-mode");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_LOGIN_DENIED, "no-such-service");
    mailsuspend_count_event(ms, MAILSUSPEND_EVENT_LOGIN_DENIED, nullptr);
    mailsuspend_count_event(nullptr, MAILSUSPEND_EVENT_LOGIN_DENIED, "imap");
    mailsuspend_close(&ms);
    const std::string dovecot = metrics::path_of(store, HostClass::dovecot);
    const std::string exim = metrics::path_of(store, HostClass::exim);
    EXPECT_EQ(value_at(dovecot, metrics::kLoginDenied + 0), 1u);
    EXPECT_EQ(value_at(dovecot, metrics::kLoginDenied + 1), 1u);
    EXPECT_EQ(value_at(dovecot, metrics::kSessionEnded + 0), 1u);
    EXPECT_EQ(value_at(exim, metrics::kReceive + 1), 1u);
    std::string e;
    uint64_t total[2] = {};
    for (int c = 0; c < 2; ++c)
        if (const auto snapshot = metrics::read(metrics::path_of(store, static_cast<HostClass>(c)), e))
            for (uint64_t v : *snapshot) total[c] += v;
    EXPECT_EQ(total[0], 3u);
    EXPECT_EQ(total[1], 1u);
}

std::vector<std::string> log_of_counting_without_files(const std::string& conf) {
    std::vector<std::string> logged;
    mailsuspend_handle* ms = mailsuspend_open(
        conf.c_str(),
        [](void* ctx, mailsuspend_log_level, const char* msg) {
            static_cast<std::vector<std::string>*>(ctx)->push_back(msg);
        },
        &logged, nullptr);
    EXPECT_NE(ms, nullptr);
    for (int i = 0; i < 3; ++i) mailsuspend_count_event(ms, MAILSUSPEND_EVENT_LOGIN_DENIED, "imap");
    mailsuspend_close(&ms);
    return logged;
}

// A store without metrics files (made before them): nothing counted, one line.
TEST(Metrics, CountEventWithoutAFileLogsOnce) {
    TempDir dir;
    const std::string conf = write_config(dir.path());
    std::string error;
    ASSERT_TRUE(StoreWriter::open(load_ok(conf), true, error)) << error;
    const auto logged = log_of_counting_without_files(conf);
    ASSERT_EQ(logged.size(), 1u);  // one line, not one per event
    EXPECT_NE(logged[0].find("not counted"), std::string::npos) << logged[0];
}

// No store at all: the fail policy's line says it; the metrics add none.
TEST(Metrics, CountEventWithoutAStoreAddsNoLine) {
    TempDir dir;
    EXPECT_TRUE(log_of_counting_without_files(write_config(dir.path())).empty());
}

}  // namespace
}  // namespace mailsuspend::test
