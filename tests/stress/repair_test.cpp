// Exact crash states a SIGKILL can leave inside a commit, built by hand.
//
// Random kills rarely land inside the few instructions of a slot write, so
// these tests let a real writer commit, then put the store file back into the
// state a writer killed at that instruction leaves (the journal holds the
// commit; the header's seq and dirty flag say it was not finished) and check
// what readers see meanwhile and what the next writer repairs.
// White-box: uses the layout of store_layout.hpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "config.hpp"
#include "image.hpp"
#include "store.hpp"
#include "store_layout.hpp"

namespace {

namespace layout = mailsuspend::layout;
using mailsuspend::Change;
using mailsuspend::Config;
using mailsuspend::HotView;
using mailsuspend::LookupStatus;
using mailsuspend::StoreReader;
using mailsuspend::StoreWriter;
using mailsuspend::TargetRecord;
using stress::make_image;
using stress::stress_key;

// The store file mapped read-write, as a crashed writer had it.
class RawStore {
public:
    explicit RawStore(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDWR);
        struct stat st {};
        if (fd_ < 0 || ::fstat(fd_, &st) != 0) return;
        size_ = static_cast<size_t>(st.st_size);
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (p != MAP_FAILED) base_ = static_cast<unsigned char*>(p);
    }
    ~RawStore() {
        if (base_) ::munmap(base_, size_);
        if (fd_ >= 0) ::close(fd_);
    }
    bool ok() const { return base_ != nullptr; }
    layout::Header& header() { return *reinterpret_cast<layout::Header*>(base_); }
    layout::Slot& slot(uint64_t i) {
        return reinterpret_cast<layout::Slot*>(base_ + header().slots_offset)[i];
    }
    // Index of the slot holding key, or -1.
    int64_t slot_of(const std::string& key) {
        const unsigned char* arena = base_ + header().arena_offset;
        for (uint64_t i = 0; i < header().slot_count; ++i) {
            const uint64_t w = slot(i).word0.load();
            if (layout::w0_state(w) != layout::kUsed) continue;
            const uint64_t off = slot(i).blob.load() >> 32;
            const unsigned char* blob = arena + off;
            if (blob[sizeof(layout::BlobHeader)] == key.size() &&
                std::memcmp(blob + layout::kBlobKeyOffset, key.data(), key.size()) == 0)
                return static_cast<int64_t>(i);
        }
        return -1;
    }

private:
    int fd_ = -1;
    size_t size_ = 0;
    unsigned char* base_ = nullptr;
};

class RepairTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/mailsuspend-repair-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        cfg_.store_path = dir_;
        cfg_.store_capacity = 100;
        cfg_.read_group = "";
        cfg_.write_group = "";
        cfg_.audit_log = dir_ + "/audit.log";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    uint64_t commit(uint32_t key, uint32_t version) {
        std::string error;
        auto w = StoreWriter::open(cfg_, true, error);
        EXPECT_TRUE(w) << error;
        if (!w) return 0;
        std::vector<Change> changes{Change{make_image(stress_key(key), version)}};
        const uint64_t seq = w->commit(changes, error);
        EXPECT_NE(seq, 0u) << error;
        return seq;
    }
    // The next writer: repairs, then check() must be clean and key at version.
    void expect_repaired(uint32_t key, uint32_t version) {
        std::string error;
        auto w = StoreWriter::open(cfg_, false, error);
        ASSERT_TRUE(w) << error;
        std::vector<std::string> report;
        EXPECT_TRUE(w->check(report));
        for (const auto& line : report) ADD_FAILURE() << "check(): " << line;
        TargetRecord rec;
        bool exists = false;
        ASSERT_TRUE(w->get(stress_key(key), rec, &exists));
        ASSERT_TRUE(exists);
        uint32_t got = 0;
        std::string why;
        EXPECT_TRUE(stress::decode_record(rec, stress_key(key), got, why)) << why;
        EXPECT_EQ(got, version) << "the journaled change was not replayed";
    }

    std::string dir_;
    Config cfg_;
};

// Killed inside write_slot: the slot's seqlock is odd for good.
TEST_F(RepairTest, SlotLeftMidWriteMakesReadersReportUnavailableUntilTheNextWriter) {
    commit(1, 1);
    commit(2, 1);
    const uint64_t seq = commit(1, 2);
    std::string error;
    auto reader = StoreReader::open(dir_, error);
    ASSERT_TRUE(reader) << error;
    {
        RawStore raw(dir_ + "/store");
        ASSERT_TRUE(raw.ok());
        const int64_t i = raw.slot_of(stress_key(1));
        ASSERT_GE(i, 0);
        const uint64_t w = raw.slot(i).word0.load();
        raw.slot(i).word0.store(w + (uint64_t{1} << 32));  // seq odd: "writer inside"
        raw.header().seq.store(seq - 1);
        raw.header().dirty.store(1);
    }
    HotView view;
    // Returns (bounded retries), and says so instead of guessing.
    EXPECT_EQ(reader->lookup(stress_key(1), view), LookupStatus::unavailable);
    TargetRecord rec;
    EXPECT_EQ(reader->read(stress_key(1), rec), LookupStatus::unavailable);
    EXPECT_FALSE(reader->last_error().empty());

    expect_repaired(1, 2);
    ASSERT_EQ(reader->lookup(stress_key(1), view), LookupStatus::found);
    uint32_t v = 0;
    std::string why;
    EXPECT_TRUE(stress::decode_hot(view, stress_key(1), v, why)) << why;
    EXPECT_EQ(v, 2u);
    ASSERT_EQ(reader->lookup(stress_key(2), view), LookupStatus::found);
}

// Killed in apply() after counting a newly used slot, before writing it.
TEST_F(RepairTest, KilledBetweenCountingASlotAndWritingItLeavesCountsRight) {
    commit(1, 1);
    const uint64_t seq = commit(3, 1);  // a new key: takes an empty slot
    {
        RawStore raw(dir_ + "/store");
        ASSERT_TRUE(raw.ok());
        const int64_t i = raw.slot_of(stress_key(3));
        ASSERT_GE(i, 0);
        // Back to the never-written empty slot; used_slots keeps the count.
        raw.slot(i).fingerprint.store(0);
        raw.slot(i).blob.store(0);
        raw.slot(i).expiry.store(0);
        raw.slot(i).word0.store(0);
        raw.header().seq.store(seq - 1);
        raw.header().dirty.store(1);
    }
    expect_repaired(3, 1);
}

// Killed after the journal sync, before any slot changed: replay, once.
TEST_F(RepairTest, JournaledButUnappliedCommitIsReplayed) {
    commit(1, 1);
    const uint64_t seq = commit(1, 2);
    {
        RawStore raw(dir_ + "/store");
        ASSERT_TRUE(raw.ok());
        raw.header().seq.store(seq - 1);
        raw.header().dirty.store(1);
    }
    expect_repaired(1, 2);
}

}  // namespace
