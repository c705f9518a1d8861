// The store: create, commit, read back, grow, replay the journal, refuse
// damaged files with a clear message.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <filesystem>

#include "store.hpp"
#include "store_layout.hpp"
#include "store_fixture.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

TEST_F(StoreTest, InitCreatesTheStore) {
    init();
    EXPECT_TRUE(std::filesystem::exists(store_dir + "/store"));
    EXPECT_TRUE(std::filesystem::exists(store_dir + "/journal"));
    EXPECT_TRUE(std::filesystem::exists(store_dir + "/lock"));
    auto r = reader();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->stats().generation, 1u);
    EXPECT_EQ(r->stats().seq, 0u);
    HotView v;
    EXPECT_EQ(r->lookup("a@example.com", v), LookupStatus::absent);
}

TEST_F(StoreTest, InitIsIdempotent) {
    {
        auto w = writer(true);
        commit(*w, {suspended_record("a@example.com", Service::imap)});
    }
    init();  // again: must not wipe
    TargetRecord out;
    EXPECT_EQ(reader()->read("a@example.com", out), LookupStatus::found);
}

TEST_F(StoreTest, CommitThenReaderSeesIt) {
    auto w = writer(true);
    auto r = reader();
    ASSERT_TRUE(r);
    TargetRecord rec = suspended_record("a@example.com", Service::imap, "spam run");
    rec.at(Service::imap).expires = 1800000000;
    rec.at(Service::send) = rec.at(Service::imap);
    rec.mode = DeliveryMode::discard;
    const uint64_t seq = commit(*w, {rec});
    EXPECT_EQ(seq, 1u);

    HotView v;
    ASSERT_EQ(r->lookup("a@example.com", v), LookupStatus::found);
    EXPECT_EQ(v.suspended, bit(Service::imap) | bit(Service::send));
    EXPECT_EQ(v.mode, DeliveryMode::discard);
    EXPECT_EQ(v.min_expiry, 1800000000u);

    TargetRecord out;
    ASSERT_EQ(r->read("a@example.com", out), LookupStatus::found);
    rec.seq = seq;
    EXPECT_EQ(out, rec);
    EXPECT_EQ(r->stats().seq, seq);
}

TEST_F(StoreTest, AbsentKeys) {
    auto w = writer(true);
    commit(*w, {suspended_record("a@example.com", Service::imap)});
    auto r = reader();
    HotView v;
    TargetRecord out;
    EXPECT_EQ(r->lookup("b@example.com", v), LookupStatus::absent);
    EXPECT_EQ(r->lookup("@example.com", v), LookupStatus::absent);
    EXPECT_EQ(r->lookup("a@example.co", v), LookupStatus::absent);
    EXPECT_EQ(r->read("A@example.com", out), LookupStatus::absent) << "keys are exact; callers normalise";
    bool exists = true;
    ASSERT_TRUE(w->get("b@example.com", out, &exists));
    EXPECT_FALSE(exists);
    EXPECT_EQ(out.key, "b@example.com");
    EXPECT_TRUE(out.empty());
}

TEST_F(StoreTest, Update) {
    auto w = writer(true);
    auto r = reader();
    commit(*w, {suspended_record("a@example.com", Service::imap, "first")});
    TargetRecord next = suspended_record("a@example.com", Service::pop3, "second");
    commit(*w, {next});
    TargetRecord out;
    ASSERT_EQ(r->read("a@example.com", out), LookupStatus::found);
    EXPECT_FALSE(out.at(Service::imap).suspended);
    EXPECT_TRUE(out.at(Service::pop3).suspended);
    EXPECT_EQ(out.at(Service::pop3).reason, "second");
    EXPECT_EQ(out.seq, 2u);
    HotView v;
    ASSERT_EQ(r->lookup("a@example.com", v), LookupStatus::found);
    EXPECT_EQ(v.suspended, bit(Service::pop3));
}

TEST_F(StoreTest, EraseWithEmptyRecord) {
    auto w = writer(true);
    auto r = reader();
    commit(*w, {suspended_record("a@example.com", Service::imap),
                suspended_record("b@example.com", Service::imap)});
    TargetRecord empty;
    empty.key = "a@example.com";
    commit(*w, {empty});
    HotView v;
    EXPECT_EQ(r->lookup("a@example.com", v), LookupStatus::absent);
    EXPECT_EQ(r->lookup("b@example.com", v), LookupStatus::found);
    bool exists = true;
    TargetRecord out;
    ASSERT_TRUE(w->get("a@example.com", out, &exists));
    EXPECT_FALSE(exists);
    // The key can come back.
    commit(*w, {suspended_record("a@example.com", Service::sieve)});
    ASSERT_EQ(r->lookup("a@example.com", v), LookupStatus::found);
    EXPECT_EQ(v.suspended, bit(Service::sieve));
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

TEST_F(StoreTest, BatchIsOneSequenceRange) {
    auto w = writer(true);
    const uint64_t last = commit(*w, {suspended_record("a@example.com", Service::imap),
                                      suspended_record("b@example.com", Service::imap),
                                      suspended_record("@example.com", Service::send)});
    EXPECT_EQ(last, 3u);
    int n = 0;
    ASSERT_TRUE(reader()->for_each([&](const TargetRecord&) { ++n; }));
    EXPECT_EQ(n, 3);
}

TEST_F(StoreTest, GrowsPastCapacityAndOpenReaderFollows) {
    auto w = writer(true);
    auto r = reader();
    ASSERT_TRUE(r);
    commit(*w, {suspended_record("first@example.com", Service::imap)});
    HotView v;
    ASSERT_EQ(r->lookup("first@example.com", v), LookupStatus::found);
    const uint64_t gen1 = r->stats().generation;

    // capacity 16: 300 keys need several new generations.
    for (int batch = 0; batch < 30; ++batch) {
        std::vector<TargetRecord> records;
        for (int i = 0; i < 10; ++i)
            records.push_back(suspended_record("u" + std::to_string(batch * 10 + i) + "@example.com",
                                               Service::receive, std::string(60, 'x')));
        commit(*w, records);
    }
    EXPECT_GT(w->stats().generation, gen1);
    for (int i = 0; i < 300; ++i) {
        ASSERT_EQ(r->lookup("u" + std::to_string(i) + "@example.com", v), LookupStatus::found) << i;
        EXPECT_EQ(v.suspended, bit(Service::receive));
    }
    ASSERT_EQ(r->lookup("first@example.com", v), LookupStatus::found);
    EXPECT_EQ(r->lookup("u300@example.com", v), LookupStatus::absent);
    EXPECT_EQ(r->stats().generation, w->stats().generation) << "the reader follows the new generation";
    TargetRecord out;
    ASSERT_EQ(r->read("u123@example.com", out), LookupStatus::found);
    EXPECT_EQ(out.at(Service::receive).reason, std::string(60, 'x'));
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

TEST_F(StoreTest, RebuildDropsEmptyAndRefusesTooSmall) {
    auto w = writer(true);
    auto r = reader();
    for (int i = 0; i < 10; ++i)
        commit(*w, {suspended_record("k" + std::to_string(i) + "@example.com", Service::imap)});
    std::string error;
    EXPECT_FALSE(w->rebuild(5, error));
    EXPECT_NE(error.find("below the 10 records"), std::string::npos) << error;
    ASSERT_TRUE(w->rebuild(1000, error)) << error;
    EXPECT_EQ(w->stats().generation, 2u);
    HotView v;
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(r->lookup("k" + std::to_string(i) + "@example.com", v), LookupStatus::found);
    EXPECT_EQ(r->stats().generation, 2u);
    EXPECT_GE(r->stats().slots, 1000u);
}

TEST_F(StoreTest, ReopenAfterCommitIsConsistent) {
    TargetRecord rec = suspended_record("a@example.com", Service::imap, "kept");
    uint64_t seq = 0;
    {
        auto w = writer(true);
        seq = commit(*w, {rec, suspended_record("@example.org", Service::receive)});
    }
    auto w = writer();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->stats().seq, seq);
    TargetRecord out;
    bool exists = false;
    ASSERT_TRUE(w->get("a@example.com", out, &exists));
    EXPECT_TRUE(exists);
    EXPECT_EQ(out.at(Service::imap).reason, "kept");
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

// A writer that died after its journal write but before the table saw the
// change: the store file is one change behind the journal.  The next writer
// replays it.
TEST_F(StoreTest, JournalReplayAfterLostApply) {
    std::string before;
    {
        auto w = writer(true);
        commit(*w, {suspended_record("a@example.com", Service::imap)});
        before = read_file(store_file);  // the table after change 1
        commit(*w, {suspended_record("b@example.com", Service::pop3, "only in the journal")});
    }
    write_file(store_file, before);  // lose the apply of change 2
    {
        HotView v;
        EXPECT_EQ(reader()->lookup("b@example.com", v), LookupStatus::absent) << "setup: change 2 lost";
    }
    auto w = writer();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->stats().seq, 2u);
    TargetRecord out;
    ASSERT_EQ(reader()->read("b@example.com", out), LookupStatus::found);
    EXPECT_EQ(out.at(Service::pop3).reason, "only in the journal");
    ASSERT_EQ(reader()->read("a@example.com", out), LookupStatus::found);
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

// As above, but the dead writer also left a slot mid-write (odd seqlock)
// and the dirty flag set.
TEST_F(StoreTest, RepairsSlotLeftMidWrite) {
    std::string before;
    {
        auto w = writer(true);
        commit(*w, {suspended_record("a@example.com", Service::imap, "v1")});
        before = read_file(store_file);
        commit(*w, {suspended_record("a@example.com", Service::imap, "v2")});
    }
    // Mark the header dirty and every used slot of the old image as locked.
    using layout::Header;
    using layout::Slot;
    Header h;
    std::memcpy(static_cast<void*>(&h), before.data(), sizeof h);
    const uint64_t slots = h.slot_count;
    for (uint64_t i = 0; i < slots; ++i) {
        uint64_t w0;
        const std::size_t off = layout::kHeaderSize + i * sizeof(Slot);
        std::memcpy(&w0, before.data() + off, 8);
        if (layout::w0_state(w0) == layout::kUsed) {
            w0 |= uint64_t{1} << 32;  // odd sequence: a writer was inside
            std::memcpy(before.data() + off, &w0, 8);
        }
    }
    const uint32_t one = 1;
    std::memcpy(before.data() + offsetof(Header, dirty), &one, 4);
    write_file(store_file, before);
    {
        // Readers give up on the locked slot instead of spinning forever.
        HotView v;
        auto r = reader();
        EXPECT_EQ(r->lookup("a@example.com", v), LookupStatus::unavailable);
        EXPECT_NE(r->last_error().find("writer died"), std::string::npos) << r->last_error();
    }
    auto w = writer();
    ASSERT_TRUE(w);
    TargetRecord out;
    ASSERT_EQ(reader()->read("a@example.com", out), LookupStatus::found);
    EXPECT_EQ(out.at(Service::imap).reason, "v2");
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

// A writer killed with SIGKILL while holding the lock: the kernel releases
// the lock and the acknowledged change is there for the next writer.
TEST_F(StoreTest, WriterKilledHoldingTheLock) {
    init();
    int ack[2];
    ASSERT_EQ(::pipe(ack), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(ack[0]);
        std::string error;
        auto w = StoreWriter::open(cfg, false, error);
        if (!w) ::_exit(3);
        std::vector<Change> changes{{suspended_record("killed@example.com", Service::send, "acked")}};
        if (w->commit(changes, error) == 0) ::_exit(4);
        if (::write(ack[1], "k", 1) != 1) ::_exit(5);
        ::pause();  // holding the lock until killed
        ::_exit(0);
    }
    ::close(ack[1]);
    char c = 0;
    ASSERT_EQ(::read(ack[0], &c, 1), 1) << "the child did not acknowledge its commit";
    ::close(ack[0]);
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    auto w = writer();
    ASSERT_TRUE(w);
    TargetRecord out;
    bool exists = false;
    ASSERT_TRUE(w->get("killed@example.com", out, &exists));
    EXPECT_TRUE(exists);
    EXPECT_EQ(out.at(Service::send).reason, "acked");
    commit(*w, {suspended_record("after@example.com", Service::imap)});
}

TEST_F(StoreTest, CorruptRecordDetected) {
    auto w = writer(true);
    commit(*w, {suspended_record("victim@example.com", Service::imap, "REASON-TO-DAMAGE")});
    std::string image = read_file(store_file);
    const auto at = image.find("REASON-TO-DAMAGE");
    ASSERT_NE(at, std::string::npos);
    const char x = 'X';
    patch(static_cast<off_t>(at), &x, 1);
    std::vector<std::string> report;
    EXPECT_FALSE(w->check(report));
    ASSERT_FALSE(report.empty());
    EXPECT_NE(report.front().find("slot"), std::string::npos) << report.front();
    auto r = reader();
    TargetRecord out;
    EXPECT_EQ(r->read("victim@example.com", out), LookupStatus::unavailable);
    EXPECT_NE(r->last_error().find("corrupt record"), std::string::npos) << r->last_error();
}

TEST_F(StoreTest, GarbageHeaderRefusedMentioningMagic) {
    init();
    patch(0, "GARBAGE!GARBAGE!", 16);
    const std::string error = reader_error();
    EXPECT_NE(error.find("magic"), std::string::npos) << error;
    EXPECT_NE(error.find(store_file), std::string::npos) << error;
    std::string werr;
    EXPECT_FALSE(StoreWriter::open(cfg, false, werr));
    EXPECT_NE(werr.find("magic"), std::string::npos) << werr;
}

TEST_F(StoreTest, UnknownLayoutVersionRefused) {
    init();
    const uint32_t version = 99;
    patch(offsetof(layout::Header, layout_version), &version, sizeof version);
    const std::string error = reader_error();
    EXPECT_NE(error.find("layout version 99"), std::string::npos) << error;
}

// The package's postinst matches "older layout" to run `mailsuspend rebuild`,
// and fails on anything else (a newer layout: a downgrade).
TEST_F(StoreTest, OlderAndNewerLayoutVersionsSaySo) {
    init();
    const uint32_t older = 0;
    patch(offsetof(layout::Header, layout_version), &older, sizeof older);
    std::string werr;
    EXPECT_FALSE(StoreWriter::open(cfg, false, werr));
    EXPECT_NE(werr.find("older layout version 0"), std::string::npos) << werr;
    EXPECT_NE(werr.find("mailsuspend rebuild"), std::string::npos) << werr;
    const uint32_t newer = layout::kLayoutVersion + 1;
    patch(offsetof(layout::Header, layout_version), &newer, sizeof newer);
    werr.clear();
    EXPECT_FALSE(StoreWriter::open(cfg, false, werr));
    EXPECT_EQ(werr.find("older layout"), std::string::npos) << werr;
    EXPECT_NE(werr.find("newer mailsuspend"), std::string::npos) << werr;
}

TEST_F(StoreTest, TruncatedFileRefused) {
    init();
    ASSERT_EQ(::truncate(store_file.c_str(), 8192), 0);
    std::string error = reader_error();
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
    ASSERT_EQ(::truncate(store_file.c_str(), 100), 0);
    error = reader_error();
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
    ASSERT_EQ(::truncate(store_file.c_str(), 0), 0);
    error = reader_error();
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
}

TEST_F(StoreTest, MissingStoreSaysInit) {
    std::string error;
    EXPECT_FALSE(StoreWriter::open(cfg, false, error));
    EXPECT_NE(error.find("mailsuspend init"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(StoreReader::open(store_dir, error));
    EXPECT_NE(error.find("mailsuspend init"), std::string::npos) << error;
}

TEST_F(StoreTest, MissingStoreFileInExistingDirSaysInit) {
    init();
    ASSERT_EQ(::unlink(store_file.c_str()), 0);
    std::string error;
    EXPECT_FALSE(StoreWriter::open(cfg, false, error));
    EXPECT_NE(error.find("mailsuspend init"), std::string::npos) << error;
    error.clear();
    EXPECT_FALSE(StoreReader::open(store_dir, error));
    EXPECT_NE(error.find("mailsuspend init"), std::string::npos) << error;
}

// A store deleted and created again (init after rm, a restored backup) is a
// new file no generation flag points to: a reader can tell it was replaced.
TEST_F(StoreTest, ReaderNoticesAReplacedStore) {
    {
        auto w = writer(true);
        commit(*w, {suspended_record("old@example.com", Service::imap)});
    }
    auto r = reader();
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->replaced());
    std::filesystem::remove_all(store_dir);
    EXPECT_TRUE(r->replaced()) << "deleted: the mapping is no longer the store";
    {
        auto w = writer(true);
        commit(*w, {suspended_record("new@example.com", Service::imap)});
    }
    EXPECT_TRUE(r->replaced());
    {
        // A rebuild publishes a new file too; following it is harmless.
        auto w = writer();
        std::string error;
        ASSERT_TRUE(w->rebuild(0, error)) << error;
    }
    auto fresh = reader();
    EXPECT_FALSE(fresh->replaced());
}

// Garbage written over a file a reader already maps: the next lookup says
// "unavailable" (fail policy) rather than answering from garbage.
TEST_F(StoreTest, GarbageOverAMappedHeaderMakesLookupsUnavailable) {
    {
        auto w = writer(true);
        commit(*w, {suspended_record("a@example.com", Service::imap)});
    }
    auto r = reader();
    ASSERT_TRUE(r);
    HotView view;
    ASSERT_EQ(r->lookup("a@example.com", view), LookupStatus::found);
    const char garbage[64] = "garbage garbage garbage garbage garbage garbage garbage garbag";
    patch(0, garbage, sizeof garbage);
    EXPECT_EQ(r->lookup("a@example.com", view), LookupStatus::unavailable);
    EXPECT_EQ(r->lookup("b@example.com", view), LookupStatus::unavailable);
    EXPECT_NE(r->last_error().find("magic"), std::string::npos) << r->last_error();
}

// A file truncated in place under a reader: replaced() tells the caller to drop
// the mapping before a lookup touches pages past the new end.
TEST_F(StoreTest, ReplacedNoticesATruncationInPlace) {
    init();
    auto r = reader();
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->replaced());
    ASSERT_EQ(::truncate(store_file.c_str(), 8192), 0);
    EXPECT_TRUE(r->replaced());
}

// A writer that died mid-apply before a reboot: readers refuse the store until
// a writer has repaired it (after which it opens normally).
TEST_F(StoreTest, ReaderRefusesAStoreLeftMidChangeBeforeAReboot) {
    {
        auto w = writer(true);
        commit(*w, {suspended_record("a@example.com", Service::imap)});
    }
    const uint32_t dirty = 1;
    patch(offsetof(layout::Header, dirty), &dirty, sizeof dirty);
    EXPECT_TRUE(reader()) << "same boot: a live writer may simply be applying";
    const char other_boot[40] = "00000000-0000-0000-0000-000000000000";
    patch(offsetof(layout::Header, boot_id), other_boot, sizeof other_boot);
    const std::string error = reader_error();
    EXPECT_NE(error.find("mailsuspend check"), std::string::npos) << error;
    writer();  // the repair
    auto r = reader();
    ASSERT_TRUE(r);
    HotView view;
    EXPECT_EQ(r->lookup("a@example.com", view), LookupStatus::found);
}

// The store truncated in place under a live mapping: a lookup touching pages
// past the new end gets SIGBUS, which the guard turns into "unavailable"
// (before the guard this killed the Dovecot or Exim process).
TEST_F(StoreTest, TruncatedInPlaceUnderAMappingIsUnavailableNotACrash) {
    cfg.store_capacity = 20000;
    std::vector<TargetRecord> records;
    for (int i = 0; i < 5000; ++i)
        records.push_back(suspended_record("u" + std::to_string(i) + "@example.com", Service::imap));
    {
        auto w = writer(true);
        commit(*w, records);
    }
    auto r = reader();
    ASSERT_TRUE(r);
    HotView view;
    TargetRecord full;
    ASSERT_EQ(r->lookup("u4999@example.com", view), LookupStatus::found);
    for (const off_t size : {off_t{8192}, off_t{0}}) {
        ASSERT_EQ(::truncate(store_file.c_str(), size), 0);
        for (int i = 0; i < 5000; i += 97) {
            const std::string key = "u" + std::to_string(i) + "@example.com";
            EXPECT_EQ(r->lookup(key, view), LookupStatus::unavailable) << key;
            EXPECT_EQ(r->read(key, full), LookupStatus::unavailable) << key;
        }
        EXPECT_NE(r->last_error().find("truncated"), std::string::npos) << r->last_error();
    }
}
