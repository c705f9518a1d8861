// Layout 2's derived data for readers (store_layout.hpp): the tag bytes and
// the domain filter.  Damaged on purpose, they are reported by check(),
// rebuilt from the slots by repair_derived() (the sweep), a rebuild and a
// dead writer's repair, and never lead a writer astray; and a layout-1 store
// is converted by `mailsuspend rebuild`'s open.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "raw_store.hpp"
#include "store.hpp"
#include "store_layout.hpp"
#include "store_fixture.hpp"
#include "test_util.hpp"

using namespace mailsuspend;
using namespace mailsuspend::test;

namespace {

TargetRecord suspended(const std::string& key, const std::string& reason = "r") {
    return suspended_record(key, Service::imap, reason);
}

class StoreTags : public StoreTest {
protected:
    void SetUp() override {
        StoreTest::SetUp();
        cfg.store_capacity = 64;
    }

    LookupStatus lookup(const std::string& key) {
        std::string error;
        auto r = StoreReader::open(store_dir, error);
        EXPECT_TRUE(r) << error;
        HotView v;
        return r ? r->lookup(key, v) : LookupStatus::unavailable;
    }

    std::vector<std::string> problems(StoreWriter& w) {
        std::vector<std::string> report;
        w.check(report);
        return report;
    }
};

bool mentions(const std::vector<std::string>& report, const std::string& text) {
    for (const auto& line : report)
        if (line.find(text) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_F(StoreTags, EveryUsedSlotCarriesItsTagAndDomainsTheirFilterBit) {
    auto w = writer(true);
    commit(*w, {suspended("a@example.com"), suspended("@example.org"), suspended("b@example.com")});
    stress::RawStore raw(store_file);
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.header().layout_version, layout::kLayoutVersion);
    int used = 0, domains = 0;
    for (uint64_t i = 0; i < raw.header().slot_count; ++i) {
        const uint64_t w0 = raw.slot(i).word0.load();
        if (layout::w0_state(w0) != layout::kUsed) {
            EXPECT_EQ(raw.tag(i), layout::kTagEmpty) << i;
            continue;
        }
        ++used;
        const uint64_t fp = raw.slot(i).fingerprint.load();
        EXPECT_EQ(raw.tag(i), layout::tag_of(fp)) << i;
        const unsigned char* key = raw.arena() + (raw.slot(i).blob.load() >> 32) + layout::kBlobKeyOffset;
        if (*key != '@') continue;
        ++domains;
        EXPECT_TRUE(raw.header().domain_filter[layout::filter_word(fp)].load() & layout::filter_bit(fp));
    }
    EXPECT_EQ(used, 3);
    EXPECT_EQ(domains, 1);
    EXPECT_TRUE(problems(*w).empty());
    EXPECT_EQ(lookup("@example.org"), LookupStatus::found);
    EXPECT_EQ(lookup("@example.net"), LookupStatus::absent);
}

// A damaged tag or filter bit hides a record from readers until it is
// repaired: check() names it, the sweep's repair_derived() and a rebuild set
// it from the slots, and the writer, which goes by the slots, never loses or
// duplicates the record meanwhile.
TEST_F(StoreTags, DamagedTagsAndFilterAreReportedAndRepairedFromTheSlots) {
    auto w = writer(true);
    commit(*w, {suspended("victim@example.com", "kept"), suspended("@victim.example")});
    {
        stress::RawStore raw(store_file);
        const int64_t mailbox = raw.slot_of("victim@example.com");
        ASSERT_GE(mailbox, 0);
        raw.tag(static_cast<uint64_t>(mailbox)) = layout::kTagEmpty;
        for (auto& word : raw.header().domain_filter) word.store(0);
    }
    const auto report = problems(*w);
    EXPECT_TRUE(mentions(report, "readers cannot find record victim@example.com")) << report.size();
    EXPECT_TRUE(mentions(report, "readers cannot find record @victim.example"));
    // The writer still finds the record by its slot: a change keeps the rest of it.
    TargetRecord before;
    bool exists = false;
    ASSERT_TRUE(w->get("victim@example.com", before, &exists));
    EXPECT_TRUE(exists);
    EXPECT_EQ(before.at(Service::imap).reason, "kept");
    EXPECT_EQ(w->repair_derived(), 2u);
    EXPECT_EQ(w->repair_derived(), 0u);
    EXPECT_TRUE(problems(*w).empty());
    EXPECT_EQ(lookup("victim@example.com"), LookupStatus::found);
    EXPECT_EQ(lookup("@victim.example"), LookupStatus::found);

    // A wrong tag (another key's) and an erased slot's tag reset to empty,
    // which would end other keys' chains early: a rebuild writes all afresh.
    commit(*w, {suspended("gone@example.com")});
    TargetRecord erased;
    erased.key = "gone@example.com";
    commit(*w, {erased});
    {
        stress::RawStore raw(store_file);
        const int64_t mailbox = raw.slot_of("victim@example.com");
        raw.tag(static_cast<uint64_t>(mailbox)) = static_cast<unsigned char>(raw.tag(mailbox) == 2 ? 3 : 2);
        for (uint64_t i = 0; i < raw.header().slot_count; ++i)
            if (layout::w0_state(raw.slot(i).word0.load()) == layout::kTombstone) raw.tag(i) = layout::kTagEmpty;
    }
    EXPECT_TRUE(mentions(problems(*w), "erased slot's tag"));
    std::string error;
    ASSERT_TRUE(w->rebuild(0, error)) << error;
    EXPECT_TRUE(problems(*w).empty());
    EXPECT_EQ(lookup("victim@example.com"), LookupStatus::found);
    EXPECT_EQ(lookup("gone@example.com"), LookupStatus::absent);
}

// A writer killed after it stored a tag and before the slot leaves a tag
// over an empty slot: readers step over it, check() finds nothing wrong, and
// the next insert on that chain takes the slot.
TEST_F(StoreTags, ATagOverAnEmptySlotIsHarmless) {
    auto w = writer(true);
    commit(*w, {suspended("first@example.com")});
    {
        stress::RawStore raw(store_file);
        const int64_t at = raw.slot_of("first@example.com");
        ASSERT_GE(at, 0);
        raw.clear_slot(static_cast<uint64_t>(at));  // the tag stays: the slot was never written
        raw.header().seq.fetch_sub(1);              // nor was the change applied
        raw.header().dirty.store(1);
        EXPECT_NE(raw.tag(static_cast<uint64_t>(at)), layout::kTagEmpty);
    }
    EXPECT_EQ(lookup("first@example.com"), LookupStatus::absent) << "setup: the change is lost";
    w.reset();
    w = writer();  // replays the dead writer's journaled change
    EXPECT_EQ(lookup("first@example.com"), LookupStatus::found);
    EXPECT_TRUE(problems(*w).empty());
    commit(*w, {suspended("second@example.com")});
    EXPECT_EQ(lookup("second@example.com"), LookupStatus::found);
    EXPECT_EQ(lookup("third@example.com"), LookupStatus::absent);
}

// A store in layout 1 (no tags, no filter; the arena right after the
// slots) is refused by readers and by plain writers, with the command that
// converts it, and `mailsuspend rebuild`'s open (convert_older) converts it
// with every record, the journal's included.
TEST_F(StoreTags, ALayoutOneStoreIsConvertedByRebuild) {
    auto w = writer(true);
    commit(*w, {suspended("old@example.com", "from layout 1"), suspended("@old.example")});
    w.reset();
    // Rewrite the file as layout 1 put it.
    std::string image = read_file(store_file);
    layout::Header h;
    std::memcpy(static_cast<void*>(&h), image.data(), sizeof h);
    const uint64_t slots_end = h.slots_offset + h.slot_count * sizeof(layout::Slot);
    std::string old = image.substr(0, slots_end) + image.substr(h.arena_offset, h.arena_size);
    old.resize((old.size() + 4095) / 4096 * 4096, '\0');
    h.layout_version = 1;
    h.arena_offset = slots_end;
    h.file_size = old.size();
    h.tags_offset = 0;
    for (auto& word : h.domain_filter) word.store(0);
    std::memcpy(old.data(), static_cast<const void*>(&h), sizeof h);
    {
        const int fd = ::open(store_file.c_str(), O_WRONLY | O_TRUNC);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, old.data(), old.size()), static_cast<ssize_t>(old.size()));
        ::close(fd);
    }
    std::string error;
    EXPECT_FALSE(StoreReader::open(store_dir, error));
    EXPECT_NE(error.find("older layout version 1"), std::string::npos) << error;
    EXPECT_FALSE(StoreWriter::open(cfg, false, error));
    EXPECT_NE(error.find("mailsuspend rebuild"), std::string::npos) << error;

    w = writer(false, /*convert=*/true);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->stats().generation, h.generation + 1);
    EXPECT_TRUE(problems(*w).empty());
    TargetRecord r;
    ASSERT_TRUE(w->get("old@example.com", r));
    EXPECT_EQ(r.at(Service::imap).reason, "from layout 1");
    EXPECT_EQ(lookup("old@example.com"), LookupStatus::found);
    EXPECT_EQ(lookup("@old.example"), LookupStatus::found);
    stress::RawStore raw(store_file);
    EXPECT_EQ(raw.header().layout_version, layout::kLayoutVersion);
}

// Whatever damage the tags took, a record a writer commits is on a chain
// readers follow: the writer re-sets the tags on the path it walked (the
// fuzzer found a slot of unknown state with an empty tag ending the
// readers' chain before the record).
TEST_F(StoreTags, ACommittedRecordIsAlwaysOnAChainReadersFollow) {
    auto w = writer(true);
    std::vector<TargetRecord> many;
    for (int i = 0; i < 40; ++i) many.push_back(suspended("u" + std::to_string(i) + "@example.com"));
    commit(*w, many);
    {
        stress::RawStore raw(store_file);
        for (uint64_t i = 0; i < raw.header().slot_count; ++i) raw.tag(i) = layout::kTagEmpty;
    }
    for (int i = 0; i < 40; i += 3) {
        const std::string key = "u" + std::to_string(i) + "@example.com";
        commit(*w, {suspended(key, "again")});
        EXPECT_EQ(lookup(key), LookupStatus::found) << key;
    }
    EXPECT_GT(w->repair_derived(), 0u);  // the others' tags
    for (int i = 0; i < 40; ++i) EXPECT_EQ(lookup("u" + std::to_string(i) + "@example.com"), LookupStatus::found);
}
