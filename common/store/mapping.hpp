// The store file as a mapping, shared by the reader (reader.cpp) and the
// writer (writer.cpp): one mapped generation, its slots read and written
// under their seqlocks, and the helpers that create and check the file.
// Internal to the store: nothing outside common/store/ includes it.  The
// hot path (read_slot, probe) is inline here, as when one file held both.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "codec.hpp"
#include "store.hpp"
#include "store_layout.hpp"

namespace mailsuspend {

struct Config;

namespace store_file {

namespace bi = boost::interprocess;
using namespace layout;

constexpr uint64_t kCheckpointJournalBytes = 8u << 20;
constexpr uint64_t kArenaBytesPerTarget = 80;
constexpr uint64_t kMaxArena = MS_MAX_ARENA;

std::string errno_text(const std::string& what);

// The kernel's boot id (ms_boot_id: one open and read).
std::string current_boot_id();

// The SIGBUS guard (bus_guard.hpp) keeps a truncated file from killing the host.

// One mapped generation of the store file.
struct Mapping {
    bi::mapped_region region;
    Header* header = nullptr;
    Slot* slots = nullptr;
    std::atomic<uint8_t>* tags = nullptr;  // nullptr: a layout-1 file, mapped only to convert it
    ms_map view{};                         // the same, for the C read path (ms_read.h)
    unsigned char* arena = nullptr;
    uint64_t slot_count = 0;
    uint64_t arena_size = 0;
    dev_t dev = 0;
    ino_t ino = 0;

    bool valid() const { return header != nullptr; }
};

// True when the header describes a layout this build knows and that fits
// the file; else false and what is wrong in error_r.
// convertible: a file in an older layout this build converts
// (kOldestConvertibleLayoutVersion and later) passes too, for the writer
// that converts it.
bool validate_header(const Header& h, uint64_t file_size, std::string& error_r, bool convertible = false);

bool map_file(const std::string& path, bool writable, Mapping& m, std::string& error_r, bool convertible = false);

// A slot as one consistent snapshot of its four words.
struct SlotCopy : ms_slot_copy {
    SlotCopy() : ms_slot_copy{} {}
    SlotCopy(uint64_t w0_, uint64_t fingerprint_, uint64_t blob_, uint64_t expiry_)
        : ms_slot_copy{w0_, fingerprint_, blob_, expiry_} {}
    uint32_t blob_offset() const { return ms_blob_offset(this); }
    uint32_t blob_length() const { return ms_blob_length(this); }
};

// Seqlock read with bounded waiting (ms_read_slot); false when a writer
// holds the slot too long (it died mid-write): the caller reports the store
// unavailable.
inline bool read_slot(const Slot& s, SlotCopy& c) { return ms_read_slot(&s, &c); }

// The writer's seqlock store: odd while the words change, even after.
inline void write_slot(Slot& s, const SlotCopy& c) {
    const uint64_t old = s.word0.load(std::memory_order_relaxed);
    const uint32_t seq = w0_seq(old);
    s.word0.store((uint64_t{seq + 1} << 32) | (old & 0xFFFFFFFFULL), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    s.fingerprint.store(c.fingerprint, std::memory_order_relaxed);
    s.blob.store(c.blob, std::memory_order_relaxed);
    s.expiry.store(c.expiry, std::memory_order_relaxed);
    s.word0.store((uint64_t{seq + 2} << 32) | (c.w0 & 0xFFFFFFFFULL), std::memory_order_release);
}

inline bool blob_has_key(const Mapping& m, const SlotCopy& c, std::string_view key) {
    return ms_blob_has_key(&m.view, &c, key.data(), key.size());
}

enum class Probe { found, absent, busy };

// The readers' probe (ms_lookup_probe): the key's chain in the tag bytes.
inline Probe lookup_probe(const Mapping& m, std::string_view key, uint64_t fp, uint64_t& index, SlotCopy& c) {
    switch (ms_lookup_probe(&m.view, key.data(), key.size(), fp, &index, &c)) {
        case MS_PROBE_FOUND: return Probe::found;
        case MS_PROBE_BUSY: return Probe::busy;
        case MS_PROBE_ABSENT: break;
    }
    return Probe::absent;
}

// The writer's probe: linear probing from the key's home slot by the slots'
// own states, which alone say where records are.  insert_at gets the first
// reusable slot (tombstone or empty) on the path.
inline Probe probe(const Mapping& m, std::string_view key, uint64_t fp, uint64_t& index, SlotCopy& c,
            uint64_t* insert_at = nullptr) {
    uint64_t i = slot_index(fp, m.slot_count);
    if (insert_at) *insert_at = UINT64_MAX;
    for (uint64_t n = 0; n < m.slot_count; ++n) {
        if (!read_slot(m.slots[i], c)) return Probe::busy;
        const uint8_t state = w0_state(c.w0);
        if (state == kEmpty) {
            if (insert_at && *insert_at == UINT64_MAX) *insert_at = i;
            return Probe::absent;
        }
        if (state == kUsed && c.fingerprint == fp && w0_key_len(c.w0) == key.size() &&
            blob_has_key(m, c, key)) {
            index = i;
            return Probe::found;
        }
        if (state == kTombstone && insert_at && *insert_at == UINT64_MAX) *insert_at = i;
        if (++i == m.slot_count) i = 0;
    }
    return Probe::absent;
}

inline bool decode_slot(const Mapping& m, const SlotCopy& c, TargetRecord& r, std::string& error_r) {
    const uint64_t off = c.blob_offset();
    if (off + c.blob_length() > m.arena_size) {
        error_r = "record points outside the arena";
        return false;
    }
    return decode_record(m.arena + off, c.blob_length(), r, error_r);
}

inline uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

struct Geometry {
    uint64_t slot_count, arena_size, file_size;
    // Where the arena starts in the file (blob_placement counts lines from the file's start).
    uint64_t arena_offset() const;
};

Geometry geometry_for(uint64_t capacity, uint64_t min_arena);

// Applies group ownership and mode; empty group = leave as is.
bool set_owner(int fd, const std::string& group, mode_t mode, std::string& error_r);

bool fsync_dir(const std::string& dir);

// A file descriptor that closes itself.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        reset();
        fd_ = std::exchange(o.fd_, -1);
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int get() const { return fd_; }
    bool ok() const { return fd_ >= 0; }
private:
    int fd_ = -1;
};

// Makes sure every byte of a file that is written through a mapping has its
// disk blocks (posix_fallocate): then no store into the mapping can fault
// for want of space, and a full filesystem is a clear error here instead.
bool allocate(int fd, uint64_t size, const std::string& path, std::string& error_r);

// Creates a fresh, empty store file of the given geometry at path.
bool create_store_file(const std::string& path, uint64_t capacity, const Geometry& g,
                       uint64_t generation, uint64_t seq, const Config& cfg, std::string& error_r);

// Calls fn with every record of m in slot order.  false at a slot a writer
// holds too long, and at a corrupt record (error_r then says which slot).
bool for_each_record(const Mapping& m, const std::function<void(const TargetRecord&)>& fn, std::string& error_r);
// The records whose blob starts at from_offset or later, with where each
// blob starts and ends in the arena.
bool for_each_record_from(const Mapping& m, uint64_t from_offset,
                          const std::function<void(const TargetRecord&, uint64_t start, uint64_t end)>& fn,
                          std::string& error_r);

// The figures `stats` prints, read from a mapping.
StoreStats stats_of(const Mapping& m);

}  // namespace store_file
}  // namespace mailsuspend
