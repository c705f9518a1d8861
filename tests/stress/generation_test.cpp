// A writer killed at the exact moment it publishes a new generation.
//
// The store grows or rebuilds by writing <store>.new and renaming it over
// <store>; readers that mapped the old file learn about the new one from a
// flag in the old file.  This test kills the writer right after rename()
// returns (by interposing rename in this executable), then checks that a
// reader which was open all along still follows later changes once the next
// writer has run, instead of reading the dead generation forever.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "config.hpp"
#include "image.hpp"
#include "raw_store.hpp"
#include "store.hpp"

namespace {

enum class DieAt { nowhere, before_rename, after_rename, after_journal_truncate, reading_journal };
DieAt die_at = DieAt::nowhere;  // set only in the writer child

}  // namespace

// Interposes libc's rename for this executable: the store calls it to
// publish a generation.
extern "C" int rename(const char* from, const char* to) {
    using RenameFn = int (*)(const char*, const char*);
    static const auto real = reinterpret_cast<RenameFn>(dlsym(RTLD_NEXT, "rename"));
    const bool publishing = std::strstr(from, "/store.new") != nullptr;
    if (publishing && die_at == DieAt::before_rename) raise(SIGKILL);
    const int rc = real(from, to);
    if (publishing && die_at == DieAt::after_rename) raise(SIGKILL);
    return rc;
}

// Interposes ftruncate: a checkpoint empties the journal with ftruncate(fd, 0).
extern "C" int ftruncate(int fd, off_t length) {
    using TruncateFn = int (*)(int, off_t);
    static const auto real = reinterpret_cast<TruncateFn>(dlsym(RTLD_NEXT, "ftruncate"));
    const int rc = real(fd, length);
    if (length == 0 && die_at == DieAt::after_journal_truncate) raise(SIGKILL);
    return rc;
}

// Interposes pread: a repairing writer reads the journal with it, after it
// dealt with slots a dead writer left mid-write.
extern "C" ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
    using PreadFn = ssize_t (*)(int, void*, size_t, off_t);
    static const auto real = reinterpret_cast<PreadFn>(dlsym(RTLD_NEXT, "pread"));
    if (die_at == DieAt::reading_journal) raise(SIGKILL);
    return real(fd, buf, count, offset);
}

namespace {

using mailsuspend::Change;
using mailsuspend::Config;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;
using mailsuspend::StoreWriter;
using stress::make_image;

// A temporary directory removed however the test ends.
struct ScopedDir {
    std::string path;
    ScopedDir() {
        char tmpl[] = "/tmp/mailsuspend-gen-XXXXXX";
        if (mkdtemp(tmpl)) path = tmpl;
    }
    ~ScopedDir() {
        if (!path.empty()) std::filesystem::remove_all(path);
    }
};
using stress::stress_key;

class GenerationTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/mailsuspend-gen-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        cfg_.store_path = dir_;
        cfg_.store_capacity = 16;
        cfg_.read_group = "";
        cfg_.write_group = "";
        cfg_.audit_log = dir_ + "/audit.log";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    void commit_version(uint32_t v) {
        std::string error;
        auto w = StoreWriter::open(cfg_, true, error);
        ASSERT_TRUE(w) << error;
        std::vector<Change> changes{Change{make_image(stress_key(1), v)}};
        ASSERT_NE(w->commit(changes, error), 0u) << error;
    }
    uint32_t reader_version(StoreReader& r) {
        HotView view;
        if (r.lookup(stress_key(1), view) != LookupStatus::found) return 0;
        uint32_t v = 0;
        std::string why;
        EXPECT_TRUE(stress::decode_hot(view, stress_key(1), v, why)) << why;
        return v;
    }

    // A writer dies at kill_point while publishing a new generation; the next
    // writer commits; a reader open all along must see that commit.
    void reader_follows_after_writer_died(DieAt kill_point) {
        commit_version(1);
        std::string error;
        auto reader = StoreReader::open(dir_, error);
        ASSERT_TRUE(reader) << error;
        ASSERT_EQ(reader_version(*reader), 1u);

        const pid_t pid = fork();
        if (pid == 0) {
            die_at = kill_point;
            std::string err;
            auto w = StoreWriter::open(cfg_, false, err);
            if (w) w->rebuild(64, err);
            _exit(3);  // not reached when the kill point was hit
        }
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            << "the writer never reached rename(): the test did not test anything";

        commit_version(2);  // the next writer repairs and commits
        EXPECT_EQ(reader_version(*reader), 2u)
            << "a reader open since before the crash still reads generation "
            << reader->stats().generation << " and misses the change";
        auto fresh = StoreReader::open(dir_, error);
        ASSERT_TRUE(fresh) << error;
        EXPECT_EQ(reader_version(*fresh), 2u);
    }

    std::string dir_;
    Config cfg_;
};

TEST_F(GenerationTest, ReaderFollowsChangesAfterWriterDiedBeforeRename) {
    reader_follows_after_writer_died(DieAt::before_rename);
}

TEST_F(GenerationTest, ReaderFollowsChangesAfterWriterDiedAfterRename) {
    reader_follows_after_writer_died(DieAt::after_rename);
}

// A writer repairing after a crash must grow the store halfway through the
// replay; if that growth empties the journal it is killed right then.  The
// rest of the replay must not be lost with it.
TEST(RepairGrowth, KilledAfterGrowingMidReplayLosesNoJournaledChange) {
    const ScopedDir scoped;
    ASSERT_FALSE(scoped.path.empty());
    const std::string& dir = scoped.path;
    Config cfg;
    cfg.store_path = dir;
    cfg.store_capacity = 200;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.audit_log = dir + "/audit.log";
    constexpr uint32_t kKeys = 150;
    std::string error;
    {
        auto w = StoreWriter::open(cfg, true, error);
        ASSERT_TRUE(w) << error;
        std::vector<Change> changes;
        for (uint32_t k = 0; k < kKeys; ++k) changes.push_back(Change{make_image(stress_key(k), 1)});
        ASSERT_NE(w->commit(changes, error), 0u) << error;
        ASSERT_EQ(w->stats().generation, 1u);
        ASSERT_GT(2 * w->stats().arena_used, w->stats().arena_bytes);
    }
    {
        // As if killed halfway through applying the batch: the second half
        // of its records never reached their slots.
        stress::RawStore raw(dir + "/store");
        ASSERT_TRUE(raw.ok());
        for (uint32_t k = kKeys / 2; k < kKeys; ++k) {
            const int64_t i = raw.slot_of(stress_key(k));
            ASSERT_GE(i, 0);
            raw.clear_slot(static_cast<uint64_t>(i));
        }
        raw.header().seq.store(0);
        raw.header().dirty.store(1);
    }
    const pid_t pid = fork();
    if (pid == 0) {
        // Killed the moment anything empties the journal; a repair that
        // keeps the journal until it is applied finishes instead.
        die_at = DieAt::after_journal_truncate;
        std::string err;
        auto w = StoreWriter::open(cfg, false, err);
        _exit(w ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        ASSERT_EQ(WTERMSIG(status), SIGKILL) << "the repairing writer crashed by itself";
    } else {
        ASSERT_EQ(WEXITSTATUS(status), 0) << "the repairing writer could not open the store";
    }

    auto w = StoreWriter::open(cfg, false, error);
    ASSERT_TRUE(w) << error;
    int missing = 0;
    for (uint32_t k = 0; k < kKeys; ++k) {
        mailsuspend::TargetRecord rec;
        bool exists = false;
        ASSERT_TRUE(w->get(stress_key(k), rec, &exists));
        if (!exists && ++missing <= 3) ADD_FAILURE() << "acknowledged '" << stress_key(k) << "' lost";
    }
    EXPECT_EQ(missing, 0);
}

// A writer died inside a slot write (seqlock odd, the blob word still the old
// one); the writer repairing it dies too, right after dealing with that slot.
// The key must not vanish: readers see one of its real versions (or
// "unavailable"), never "absent" for a key that was suspended all along.
TEST(RepairVisibility, KeyCaughtMidWriteNeverLooksAbsent) {
    const ScopedDir scoped;
    ASSERT_FALSE(scoped.path.empty());
    const std::string& dir = scoped.path;
    Config cfg;
    cfg.store_path = dir;
    cfg.store_capacity = 100;
    cfg.read_group = "";
    cfg.write_group = "";
    cfg.audit_log = dir + "/audit.log";
    const std::string key = stress_key(7);
    std::string error;
    uint64_t seq = 0;
    {
        auto w = StoreWriter::open(cfg, true, error);
        ASSERT_TRUE(w) << error;
        std::vector<Change> v1{Change{make_image(key, 1)}};
        ASSERT_NE(w->commit(v1, error), 0u) << error;
        std::vector<Change> v2{Change{make_image(key, 2)}};
        seq = w->commit(v2, error);
        ASSERT_NE(seq, 0u) << error;
    }
    {
        // Died in write_slot for version 2: odd seqlock, fingerprint stored,
        // blob word still version 1's (the first blob, at arena offset 8).
        stress::RawStore raw(dir + "/store");
        ASSERT_TRUE(raw.ok());
        const int64_t i = raw.slot_of(key);
        ASSERT_GE(i, 0);
        mailsuspend::layout::BlobHeader first;
        std::memcpy(&first, raw.arena() + 8, sizeof first);
        raw.slot(i).blob.store((uint64_t{8} << 32) | first.length);
        raw.slot(i).word0.store(raw.slot(i).word0.load() + (uint64_t{1} << 32));
        raw.header().seq.store(seq - 1);
        raw.header().dirty.store(1);
    }
    auto reader = StoreReader::open(dir, error);
    ASSERT_TRUE(reader) << error;
    HotView view;
    EXPECT_EQ(reader->lookup(key, view), LookupStatus::unavailable);

    const pid_t pid = fork();
    if (pid == 0) {
        die_at = DieAt::reading_journal;
        std::string err;
        auto w = StoreWriter::open(cfg, false, err);
        _exit(3);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the repair never read the journal: nothing tested";

    const LookupStatus s = reader->lookup(key, view);
    EXPECT_NE(s, LookupStatus::absent) << "the key vanished: a suspended account looks unsuspended";
    if (s == LookupStatus::found) {
        uint32_t v = 0;
        std::string why;
        EXPECT_TRUE(stress::decode_hot(view, key, v, why)) << why;
        EXPECT_TRUE(v == 1 || v == 2) << v;
    }
    {
        auto w = StoreWriter::open(cfg, false, error);
        ASSERT_TRUE(w) << error;
        std::vector<std::string> report;
        EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
    }
    ASSERT_EQ(reader->lookup(key, view), LookupStatus::found);
    uint32_t v = 0;
    std::string why;
    EXPECT_TRUE(stress::decode_hot(view, key, v, why)) << why;
    EXPECT_EQ(v, 2u);
}

}  // namespace
