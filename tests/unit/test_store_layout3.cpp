// Layout 3 (ms_store.h): records in the blob form of version 4, and a blob
// that fits a cache line placed inside one, by every commit, growth and
// rebuild; a layout-2 store (version-2 blobs anywhere in the arena) is
// refused by readers and converted by `mailsuspend rebuild`'s open, its
// journal's older blobs included.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec.hpp"
#include "raw_store.hpp"
#include "store.hpp"
#include "store_fixture.hpp"
#include "store_layout.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

// A journal of one committed change, as journal.cpp reads it (the format is
// private to the store): the entry (u32 magic, u32 length, u64 seq, the
// blob), then the commit (u32 magic, u32 CRC-32 of the entry, u64 last seq).
std::string journal_of(const std::string& blob, uint64_t seq) {
    std::string out;
    auto put = [&out](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(layout::kJournalEntryMagic);
    put(static_cast<uint32_t>(blob.size()));
    put(seq);
    out += blob;
    const uint32_t crc = layout::crc32(out.data(), out.size());
    put(layout::kJournalCommitMagic);
    put(crc);
    put(seq);
    return out;
}

class StoreLayout3 : public StoreTest {
protected:
    // Records of every size around a cache line: addresses of 16 to 75
    // octets, reasons of 0 to 80, one to three services.
    std::vector<TargetRecord> assorted(std::mt19937_64& rng, int n, const std::string& tag) {
        std::vector<TargetRecord> out;
        for (int i = 0; i < n; ++i) {
            const std::string local = tag + std::to_string(i) + std::string(rng() % 2 ? rng() % 50 : 0, 'x');
            TargetRecord r = suspended_record(local + "@example.com", Service::imap,
                                              std::string(rng() % 2 ? rng() % 81 : rng() % 12, 'r'));
            if (rng() % 2) r.at(Service::pop3) = r.at(Service::imap);
            if (rng() % 3 == 0) r.at(Service::send) = r.at(Service::imap), r.at(Service::send).expires = 1900000000;
            out.push_back(std::move(r));
        }
        return out;
    }

    struct Blob {
        uint64_t offset, length;
        uint16_t version;
    };
    // Every used slot's blob, as the file holds it.
    std::vector<Blob> blobs() {
        stress::RawStore raw(store_file);
        EXPECT_TRUE(raw.ok());
        std::vector<Blob> out;
        for (uint64_t i = 0; i < raw.header().slot_count; ++i) {
            if (layout::w0_state(raw.slot(i).word0.load()) != layout::kUsed) continue;
            const uint64_t word = raw.slot(i).blob.load();
            layout::BlobHeader h;
            std::memcpy(&h, raw.arena() + (word >> 32), sizeof h);
            out.push_back({raw.header().arena_offset + (word >> 32), word & 0xFFFFFFFF, h.version});
        }
        return out;
    }

    void expect_short_blobs_inside_a_line() {
        int short_ones = 0;
        for (const Blob& b : blobs()) {
            EXPECT_EQ(b.version, 4u);
            if (b.length > layout::kCacheLine) continue;
            ++short_ones;
            EXPECT_EQ(b.offset / layout::kCacheLine, (b.offset + b.length - 1) / layout::kCacheLine)
                << "a blob of " << b.length << " bytes at file offset " << b.offset;
        }
        EXPECT_GT(short_ones, 0) << "the test needs blobs that fit a line";
    }

    void expect_readable(const std::vector<TargetRecord>& records) {
        auto r = reader();
        ASSERT_TRUE(r);
        for (const auto& want : records) {
            TargetRecord got;
            ASSERT_EQ(r->read(want.key, got), LookupStatus::found) << want.key;
            EXPECT_EQ(got.at(Service::imap).reason, want.at(Service::imap).reason) << want.key;
            EXPECT_EQ(got.at(Service::send).expires, want.at(Service::send).expires) << want.key;
        }
    }
};

}  // namespace

TEST_F(StoreLayout3, ShortRecordsNeverStraddleACacheLine) {
    std::mt19937_64 rng(3);
    cfg.store_capacity = 13;  // 17 slots: the arena starts 32 bytes into a line
    auto w = writer(true);
    {
        stress::RawStore raw(store_file);
        ASSERT_EQ(raw.header().arena_offset % layout::kCacheLine, 32u);
    }
    std::vector<TargetRecord> all;
    // Small commits, then one that makes the store grow (capacity 16).
    for (int round = 0; round < 6; ++round) {
        auto batch = assorted(rng, round < 5 ? 3 : 40, "r" + std::to_string(round) + "-");
        commit(*w, batch);
        all.insert(all.end(), batch.begin(), batch.end());
        expect_short_blobs_inside_a_line();
    }
    EXPECT_GT(w->stats().generation, 1u) << "the store was meant to grow";
    expect_short_blobs_inside_a_line();
    expect_readable(all);
    std::string error;
    ASSERT_TRUE(w->rebuild(0, error)) << error;
    expect_short_blobs_inside_a_line();
    expect_readable(all);
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
}

// The typical record (two services, one reason, an address of 21 octets)
// takes one line: a store of them is a line per record, no padding.
TEST_F(StoreLayout3, TypicalRecordsTakeALineEach) {
    cfg.store_capacity = 1000;
    auto w = writer(true);
    std::vector<TargetRecord> records;
    for (int i = 0; i < 1000; ++i) {
        TargetRecord r = suspended_record("u" + std::to_string(100000 + i) + "@d1234.example", Service::imap,
                                          "unpaid invoice");
        r.at(Service::pop3) = r.at(Service::imap);
        records.push_back(std::move(r));
    }
    commit(*w, records);
    std::string error;
    ASSERT_TRUE(w->rebuild(0, error)) << error;
    for (const Blob& b : blobs()) {
        EXPECT_EQ(b.length, layout::kCacheLine);
        EXPECT_EQ(b.offset % layout::kCacheLine, 0u);
    }
    EXPECT_LE(w->stats().arena_used, 8 + 1000 * layout::kCacheLine + layout::kCacheLine);
    expect_readable(records);
}

// A store the release before wrote: layout 2, version-2 blobs packed at
// 8-byte offsets.  Readers and plain writers refuse it with the command
// that converts it; rebuild's open converts it, every record kept, in
// version 4 and placed.
TEST_F(StoreLayout3, ALayoutTwoStoreIsConvertedByRebuild) {
    std::mt19937_64 rng(2);
    auto records = assorted(rng, 30, "old");
    const TargetRecord late = suspended_record("late@example.com", Service::imap, "journaled");
    {
        auto w = writer(true);
        commit(*w, records);
        std::string error;
        ASSERT_TRUE(w->rebuild(0, error)) << error;  // checkpointed: the journal is empty
    }
    {
        stress::RawStore raw(store_file);
        ASSERT_TRUE(raw.ok());
        uint64_t used = 8;
        for (uint64_t i = 0; i < raw.header().slot_count; ++i) {
            if (layout::w0_state(raw.slot(i).word0.load()) != layout::kUsed) continue;
            const uint64_t word = raw.slot(i).blob.load();
            TargetRecord r;
            std::string why, old;
            ASSERT_TRUE(decode_record(raw.arena() + (word >> 32), word & 0xFFFFFFFF, r, why)) << why;
            encode_portable_record(r, old);
            std::memcpy(raw.arena() + used, old.data(), old.size());
            raw.slot(i).blob.store(used << 32 | old.size());
            used += old.size();
        }
        raw.header().arena_used.store(used);
        raw.header().layout_version = 2;
        // A change the older release journaled but had not applied when it
        // stopped: a version-2 blob, replayed by the conversion.
        std::string blob;
        encode_portable_record(late, blob);
        write_file(store_dir + "/journal", journal_of(blob, raw.header().seq.load() + 1));
    }
    std::string error;
    EXPECT_FALSE(StoreReader::open(store_dir, error));
    EXPECT_NE(error.find("older layout version 2"), std::string::npos) << error;
    EXPECT_FALSE(StoreWriter::open(cfg, false, error));
    EXPECT_NE(error.find("mailsuspend rebuild"), std::string::npos) << error;
    for (const Blob& b : blobs()) ASSERT_EQ(b.version, 2u);

    auto w = writer(false, /*convert=*/true);
    ASSERT_TRUE(w);
    std::vector<std::string> report;
    EXPECT_TRUE(w->check(report)) << (report.empty() ? "" : report.front());
    stress::RawStore raw(store_file);
    EXPECT_EQ(raw.header().layout_version, layout::kLayoutVersion);
    expect_short_blobs_inside_a_line();
    records.push_back(late);
    expect_readable(records);
}
