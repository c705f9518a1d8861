#include "store.hpp"

#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>

#include "codec.hpp"
#include "bus_guard.hpp"
#include "config.hpp"
#include "bus_guard.hpp"
#include "store_layout.hpp"

namespace bi = boost::interprocess;

namespace mailsuspend {

using namespace layout;

uint64_t layout::hash_key(const char* key, std::size_t len) {
    // 64-bit multiply-xorshift over 8-byte words (stable: part of the layout).
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
    uint64_t h = 0x6A09E667F3BCC909ULL ^ (len * kMul);
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        std::memcpy(&w, key + i, 8);
        h = (h ^ w) * kMul;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, key + i, len - i);
    h = (h ^ tail) * kMul;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h;
}

uint32_t layout::crc32(const void* data, std::size_t len, uint32_t seed) {
    boost::crc_32_type crc;
    if (seed) crc.reset(seed);
    crc.process_bytes(data, len);
    return crc.checksum();
}

namespace {

constexpr int kSpinRetries = 64;
// Then the reader yields until this much time has passed and gives up (the
// writer died mid-write).  A time budget, not a count of yields: on a busy
// CPU every sched_yield hands over a whole time slice, and 4000 of them held
// a Dovecot/Exim process for 6-16 s per lookup (BM_LookupDeadWriterSlot/1).
// A live writer holds a slot for a few stores.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
// A fuzzed store leaves many slots odd with no writer alive; at 2 ms each the
// fuzzer spent three quarters of its time in sched_yield, and next to other
// fuzzers each yield gave away a whole time slice.  Same path, a short spin.
constexpr int64_t kGiveUpNs = 20'000;
constexpr bool kYieldWhileWaiting = false;
#else
constexpr int64_t kGiveUpNs = 2'000'000;
constexpr bool kYieldWhileWaiting = true;
#endif
constexpr uint64_t kCheckpointJournalBytes = 8u << 20;
constexpr uint64_t kArenaBytesPerTarget = 80;
constexpr uint64_t kMaxArena = 0xFFFFFFF0ULL;  // offsets are 32-bit

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Plain read(), not an ifstream: readers call this on open, and iostreams
// would pull the C++ locale machinery into the Dovecot mail plugins' core
// module (its static initialisers run in every session that loads it).
std::string current_boot_id() {
    char buf[64] = {};
    const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    std::string id(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (const auto eol = id.find('\n'); eol != std::string::npos) id.resize(eol);
    return id;
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// The SIGBUS guard (bus_guard.hpp) keeps a truncated file from killing the host.

// One mapped generation of the store file.
struct Mapping {
    bi::mapped_region region;
    Header* header = nullptr;
    Slot* slots = nullptr;
    unsigned char* arena = nullptr;
    uint64_t slot_count = 0;
    uint64_t arena_size = 0;
    dev_t dev = 0;
    ino_t ino = 0;

    bool valid() const { return header != nullptr; }
};

// Empty when the header describes a layout this build knows and that fits the file.
std::string validate_header(const Header& h, uint64_t file_size) {
    if (file_size < kHeaderSize) return "file is shorter than its header (truncated?)";
    if (h.magic != kStoreMagic) return "not a mailsuspend store (bad magic number)";
    // The package's postinst matches "older layout" and runs `mailsuspend rebuild`,
    // which is where a build that changes the layout learns to read the old one.
    if (h.layout_version < kLayoutVersion)
        return "older layout version " + std::to_string(h.layout_version) + " (this build reads " +
               std::to_string(kLayoutVersion) + "; `mailsuspend rebuild` converts the layouts it knows)";
    if (h.layout_version != kLayoutVersion)
        return "unknown layout version " + std::to_string(h.layout_version) + " (this build reads " +
               std::to_string(kLayoutVersion) + "; written by a newer mailsuspend?)";
    if (h.header_size != kHeaderSize) return "unknown header size";
    if (h.file_size != file_size)
        return "file is " + std::to_string(file_size) + " bytes, header says " +
               std::to_string(h.file_size) + " (truncated or overwritten?)";
    if (h.slot_count == 0 || h.slots_offset != kHeaderSize ||
        h.slot_count > (file_size - kHeaderSize) / sizeof(Slot) ||
        h.arena_offset != h.slots_offset + h.slot_count * sizeof(Slot) ||
        h.arena_size > file_size - h.arena_offset || h.arena_size > kMaxArena + 16)
        return "inconsistent geometry in header";
    // A generation has at least one slot per target it was sized for; a
    // writer sizes the next one from capacity, so a damaged value must not
    // reach it (it asked for a file of tens of GiB).
    if (h.capacity > h.slot_count) return "capacity exceeds the slots in the header";
    if (h.arena_used.load(std::memory_order_relaxed) > h.arena_size) return "arena overflows";
    return {};
}

bool map_file(const std::string& path, bool writable, Mapping& m, std::string& error) {
    try {
        const auto mode = writable ? bi::read_write : bi::read_only;
        bi::file_mapping file(path.c_str(), mode);
        struct stat st {};
        if (::fstat(file.get_mapping_handle().handle, &st) != 0) {
            error = errno_text("cannot stat " + path);
            return false;
        }
        if (static_cast<uint64_t>(st.st_size) < kHeaderSize) {
            error = path + ": file is shorter than its header (truncated?)";
            return false;
        }
        bi::mapped_region region(file, mode);
        auto* header = static_cast<Header*>(region.get_address());
        const std::string why = validate_header(*header, region.get_size());
        if (!why.empty()) {
            error = path + ": " + why;
            return false;
        }
        m.region = std::move(region);
        m.header = static_cast<Header*>(m.region.get_address());
        auto* base = static_cast<unsigned char*>(m.region.get_address());
        m.slots = reinterpret_cast<Slot*>(base + m.header->slots_offset);
        m.arena = base + m.header->arena_offset;
        m.slot_count = m.header->slot_count;
        m.arena_size = m.header->arena_size;
        m.dev = st.st_dev;
        m.ino = st.st_ino;
        return true;
    } catch (const bi::interprocess_exception& e) {
        error = path + ": " + e.what();
        return false;
    }
}

// A slot as one consistent snapshot of its four words.
struct SlotCopy {
    uint64_t w0 = 0, fingerprint = 0, blob = 0, expiry = 0;
    uint32_t blob_offset() const { return static_cast<uint32_t>(blob >> 32); }
    uint32_t blob_length() const { return static_cast<uint32_t>(blob); }
};

// Seqlock read with bounded retries; false when a writer holds the slot too
// long (it died mid-write): the caller reports the store unavailable.
bool read_slot(const Slot& s, SlotCopy& c) {
    int64_t give_up_at = 0;
    for (int attempt = 0;; ++attempt) {
        const uint64_t before = s.word0.load(std::memory_order_acquire);
        if ((w0_seq(before) & 1) == 0) {
            c.fingerprint = s.fingerprint.load(std::memory_order_relaxed);
            c.blob = s.blob.load(std::memory_order_relaxed);
            c.expiry = s.expiry.load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (s.word0.load(std::memory_order_relaxed) == before) {
                c.w0 = before;
                return true;
            }
        }
        if (attempt < kSpinRetries) {
            cpu_relax();
            continue;
        }
        timespec ts;  // vDSO: no system call
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        const int64_t now = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        if (give_up_at == 0) give_up_at = now + kGiveUpNs;
        else if (now >= give_up_at) return false;
        if (kYieldWhileWaiting) sched_yield();
        else cpu_relax();
    }
}

// The writer's seqlock store: odd while the words change, even after.
void write_slot(Slot& s, const SlotCopy& c) {
    const uint64_t old = s.word0.load(std::memory_order_relaxed);
    const uint32_t seq = w0_seq(old);
    s.word0.store((uint64_t{seq + 1} << 32) | (old & 0xFFFFFFFFULL), std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    s.fingerprint.store(c.fingerprint, std::memory_order_relaxed);
    s.blob.store(c.blob, std::memory_order_relaxed);
    s.expiry.store(c.expiry, std::memory_order_relaxed);
    s.word0.store((uint64_t{seq + 2} << 32) | (c.w0 & 0xFFFFFFFFULL), std::memory_order_release);
}

bool blob_has_key(const Mapping& m, const SlotCopy& c, std::string_view key) {
    const uint64_t off = c.blob_offset(), len = c.blob_length();
    if (off + len > m.arena_size || len < kBlobKeyOffset + key.size()) return false;
    const unsigned char* p = m.arena + off;
    return p[sizeof(BlobHeader)] == key.size() &&
           std::memcmp(p + kBlobKeyOffset, key.data(), key.size()) == 0;
}

enum class Probe { found, absent, busy };

// Linear probing from the key's home slot.  insert_at (writer only) gets the
// first reusable slot (tombstone or empty) on the probe path.
Probe probe(const Mapping& m, std::string_view key, uint64_t fp, uint64_t& index, SlotCopy& c,
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

bool decode_slot(const Mapping& m, const SlotCopy& c, TargetRecord& r, std::string& error) {
    const uint64_t off = c.blob_offset();
    if (off + c.blob_length() > m.arena_size) {
        error = "record points outside the arena";
        return false;
    }
    return decode_record(m.arena + off, c.blob_length(), r, error);
}

uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

struct Geometry {
    uint64_t slot_count, arena_size, file_size;
};

Geometry geometry_for(uint64_t capacity, uint64_t min_arena) {
    Geometry g{};
    g.slot_count = std::max<uint64_t>(16, static_cast<uint64_t>(std::ceil(capacity / kMaxLoad)));
    g.arena_size = std::min(kMaxArena, round_up(std::max({capacity * kArenaBytesPerTarget,
                                                           min_arena, uint64_t{65536}}), 4096));
    g.file_size = round_up(kHeaderSize + g.slot_count * sizeof(Slot) + g.arena_size, 4096);
    return g;
}

// Applies group ownership and mode; empty group = leave as is.
bool set_owner(int fd, const std::string& group, mode_t mode, std::string& error) {
    if (!group.empty()) {
        struct group* gr = ::getgrnam(group.c_str());
        if (!gr) {
            error = "group '" + group + "' does not exist (create it with addgroup --system " +
                    group + ", or set it to \"\" in mailsuspend.conf)";
            return false;
        }
        if (::fchown(fd, static_cast<uid_t>(-1), gr->gr_gid) != 0) {
            error = errno_text("cannot give a file to group " + group);
            return false;
        }
    }
    if (::fchmod(fd, mode) != 0) {
        error = errno_text("cannot set file mode");
        return false;
    }
    return true;
}

bool fsync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

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
bool allocate(int fd, uint64_t size, const std::string& path, std::string& error) {
    int rc;
    do rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    while (rc == EINTR);
    if (rc == 0) return true;
    error = "cannot allocate " + std::to_string(size) + " bytes for " + path + ": " + std::strerror(rc) +
            (rc == ENOSPC ? " (the store's filesystem is full: nothing changed)" : "");
    return false;
}

// Creates a fresh, empty store file of the given geometry at path.
bool create_store_file(const std::string& path, uint64_t capacity, const Geometry& g,
                       uint64_t generation, uint64_t seq, const Config& cfg, std::string& error) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.ok()) {
        error = errno_text("cannot create " + path);
        return false;
    }
    // Every page allocated now, not a sparse file (ftruncate alone): a write
    // through the mapping into a hole on a full filesystem raises SIGBUS.
    if (!allocate(fd.get(), g.file_size, path, error)) {
        ::unlink(path.c_str());
        return false;
    }
    Header h{};
    h.magic = kStoreMagic;
    h.layout_version = kLayoutVersion;
    h.header_size = kHeaderSize;
    h.generation = generation;
    h.capacity = capacity;
    h.slot_count = g.slot_count;
    h.slots_offset = kHeaderSize;
    h.arena_offset = kHeaderSize + g.slot_count * sizeof(Slot);
    h.arena_size = g.arena_size;
    h.file_size = g.file_size;
    h.arena_used.store(8);  // offset 0 means "no blob"
    h.seq.store(seq);
    h.checkpoint_seq.store(seq);
    std::snprintf(h.boot_id, sizeof h.boot_id, "%s", current_boot_id().c_str());
    if (const ssize_t n = ::pwrite(fd.get(), &h, sizeof h, 0); n != static_cast<ssize_t>(sizeof h)) {
        if (n >= 0) errno = ENOSPC;  // a short write sets no errno
        error = errno_text("cannot write " + path);
        return false;
    }
    return set_owner(fd.get(), cfg.write_group, 0664, error);
}

}  // namespace

// ---------------------------------------------------------------- reader

struct StoreReader::Impl {
    std::string dir;
    std::string path;
    Mapping map;
    std::string error;

    bool remap() {
        Mapping fresh;
        if (!map_file(path, false, fresh, error)) return false;
        // A writer died mid-apply before the machine rebooted: pages of that
        // apply may be half on disk, and only a writer's repair (the boot
        // unit's `mailsuspend check`, or any command) makes them whole.
        const Header& h = *fresh.header;
        if (h.dirty.load(std::memory_order_acquire) &&
            std::strncmp(h.boot_id, current_boot_id().c_str(), sizeof h.boot_id) != 0) {
            error = path + ": a writer died mid-change before a reboot; the store needs its "
                           "repair (run: mailsuspend check)";
            return false;
        }
        map = std::move(fresh);
        return true;
    }
    // The file shrank under the mapping: drop it (the next call reopens,
    // and refuses a truncated file with a clear message).
    bool lose_mapping() {
        map = Mapping{};
        error = path + ": the store file shrank under its mapping (truncated in place?)";
        return false;
    }
    // Follows a newer generation; false when it cannot be mapped.
    // The header is re-checked on every lookup (the cache lines are hot
    // anyway): garbage written over a mapped file in place makes the store
    // unavailable instead of answering from garbage.
    bool intact() const {
        const Header& h = *map.header;
        return h.magic == kStoreMagic && h.layout_version == kLayoutVersion &&
               h.slot_count == map.slot_count && h.arena_size == map.arena_size;
    }
    bool current() {
        bool fresh = false;
        if (map.valid() &&
            !under_bus_guard([&] { fresh = !map.header->retired.load(std::memory_order_acquire) && intact(); }))
            return lose_mapping();
        if (fresh) return true;
        return remap();
    }
};

StoreReader::StoreReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreReader::~StoreReader() = default;

std::unique_ptr<StoreReader> StoreReader::open(const std::string& dir, std::string& error) {
    try {
        auto impl = std::make_unique<Impl>();
        impl->dir = dir;
        impl->path = dir + "/store";
        install_bus_guard();
        if (::access(impl->path.c_str(), F_OK) != 0 && errno == ENOENT) {
            error = "no store at " + impl->path + " (run: mailsuspend init)";
            return nullptr;
        }
        if (!impl->remap()) {
            error = impl->error;
            return nullptr;
        }
        return std::unique_ptr<StoreReader>(new StoreReader(std::move(impl)));
    } catch (const std::exception& e) {
        error = std::string("cannot open the store: ") + e.what();
        return nullptr;
    }
}

LookupStatus StoreReader::lookup(std::string_view key, HotView& out) noexcept {
    if (!impl_->current()) return LookupStatus::unavailable;
    const Mapping& m = impl_->map;
    const uint64_t fp = hash_key(key.data(), key.size());
    uint64_t index = 0;
    SlotCopy c;
    Probe found = Probe::absent;
    if (!under_bus_guard([&] { found = probe(m, key, fp, index, c); })) {
        impl_->lose_mapping();
        return LookupStatus::unavailable;
    }
    switch (found) {
        case Probe::busy:
            impl_->error = "a store slot stayed locked (a writer died mid-write; the next "
                           "mailsuspend command repairs it)";
            return LookupStatus::unavailable;
        case Probe::absent: return LookupStatus::absent;
        case Probe::found: break;
    }
    out.suspended = w0_suspended(c.w0);
    out.mode = static_cast<DeliveryMode>(std::min<uint8_t>(w0_mode(c.w0), 4));
    out.min_expiry = static_cast<uint32_t>(c.expiry);
    out.blob = c.blob_offset();
    return LookupStatus::found;
}

LookupStatus StoreReader::read(std::string_view key, TargetRecord& out) noexcept {
    try {
        if (!impl_->current()) return LookupStatus::unavailable;
        const Mapping& m = impl_->map;
        uint64_t index = 0;
        SlotCopy c;
        Probe found = Probe::absent;
        if (!under_bus_guard([&] { found = probe(m, key, hash_key(key.data(), key.size()), index, c); }))
            return impl_->lose_mapping(), LookupStatus::unavailable;
        switch (found) {
            case Probe::busy: impl_->error = "a store slot stayed locked"; return LookupStatus::unavailable;
            case Probe::absent: return LookupStatus::absent;
            case Probe::found: break;
        }
        if (uint64_t{c.blob_offset()} + c.blob_length() > m.arena_size) {
            impl_->error = "corrupt record for " + std::string(key) + ": it points outside the arena";
            return LookupStatus::unavailable;
        }
        std::string blob(c.blob_length(), '\0');  // allocated outside the guard
        if (!under_bus_guard([&] { std::memcpy(blob.data(), m.arena + c.blob_offset(), blob.size()); }))
            return impl_->lose_mapping(), LookupStatus::unavailable;
        std::string why;
        if (!decode_record(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), out, why)) {
            impl_->error = "corrupt record for " + std::string(key) + ": " + why;
            return LookupStatus::unavailable;
        }
        return LookupStatus::found;
    } catch (const std::exception& e) {
        impl_->error = e.what();
        return LookupStatus::unavailable;
    }
}

bool StoreReader::for_each(const std::function<void(const TargetRecord&)>& fn) noexcept {
    try {
        if (!impl_->current()) return false;
        const Mapping& m = impl_->map;
        TargetRecord r;
        for (uint64_t i = 0; i < m.slot_count; ++i) {
            SlotCopy c;
            if (!read_slot(m.slots[i], c)) return false;
            if (w0_state(c.w0) != kUsed) continue;
            std::string why;
            if (!decode_slot(m, c, r, why)) {
                impl_->error = "corrupt record in slot " + std::to_string(i) + ": " + why;
                return false;
            }
            fn(r);
        }
        return true;
    } catch (const std::exception& e) {
        impl_->error = e.what();
        return false;
    }
}

namespace {
StoreStats stats_of(const Mapping& m) {
    StoreStats s;
    if (!m.valid()) return s;
    s.generation = m.header->generation;
    s.seq = m.header->seq.load();
    s.capacity = m.header->capacity;
    s.slots = m.slot_count;
    s.used_slots = m.header->used_slots.load();
    s.arena_bytes = m.arena_size;
    s.arena_used = m.header->arena_used.load();
    s.file_bytes = m.header->file_size;
    return s;
}
}  // namespace

StoreStats StoreReader::stats() const noexcept { return stats_of(impl_->map); }
const std::string& StoreReader::last_error() const noexcept { return impl_->error; }

bool StoreReader::usable() noexcept { return impl_->current(); }

uint64_t StoreReader::change_stamp() noexcept {
    const Mapping& m = impl_->map;
    if (!m.valid()) return 0;
    uint64_t stamp = 0;
    if (!under_bus_guard([&] {
            const Header& h = *m.header;
            stamp = h.seq.load(std::memory_order_acquire) ^ (h.generation << 40) ^
                    (uint64_t{h.retired.load(std::memory_order_acquire)} << 63);
        })) {
        impl_->lose_mapping();
        return 0;
    }
    return stamp == 0 ? 1 : stamp;
}

bool StoreReader::replaced() const noexcept {
    struct stat st {};
    // Deleted, or the directory can no longer be entered: what is mapped is
    // no longer the store, so the caller reopens and, failing, applies the
    // fail policy like every process that starts now.
    if (::stat(impl_->path.c_str(), &st) != 0) return true;
    // A size that differs from the mapping means the file was truncated or
    // overwritten in place: touching pages past its end would fault, so the
    // caller must drop this mapping now.
    return st.st_dev != impl_->map.dev || st.st_ino != impl_->map.ino ||
           static_cast<uint64_t>(st.st_size) != impl_->map.region.get_size();
}

// ---------------------------------------------------------------- journal

namespace {

struct JournalEntryHeader {
    uint32_t magic;
    uint32_t length;  // blob bytes that follow
    uint64_t seq;
};
struct JournalCommit {
    uint32_t magic;
    uint32_t crc;     // over the transaction's entries
    uint64_t last_seq;
};

struct JournalEntry {
    uint64_t seq;
    std::string blob;
};

// Reads every committed transaction; a torn tail (a writer killed before its
// commit record reached the disk) is cut off: it was never acknowledged.
bool read_journal(int fd, std::vector<JournalEntry>& entries, std::string& error) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        error = errno_text("cannot stat the journal");
        return false;
    }
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    if (!data.empty() && ::pread(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) {
        error = errno_text("cannot read the journal");
        return false;
    }
    std::size_t pos = 0, committed_end = 0, tx_start = 0;
    std::vector<JournalEntry> pending;
    while (pos + sizeof(JournalEntryHeader) <= data.size()) {
        uint32_t magic;
        std::memcpy(&magic, data.data() + pos, 4);
        if (magic == kJournalEntryMagic) {
            JournalEntryHeader h;
            std::memcpy(&h, data.data() + pos, sizeof h);
            const std::size_t body = pos + sizeof h;
            if (h.length > data.size() - body) break;
            const auto* p = reinterpret_cast<const unsigned char*>(data.data() + body);
            if (blob_length(p, h.length) != h.length) break;
            pending.push_back({h.seq, data.substr(body, h.length)});
            pos = body + h.length;
        } else if (magic == kJournalCommitMagic) {
            JournalCommit c;
            std::memcpy(&c, data.data() + pos, sizeof c);
            if (crc32(data.data() + tx_start, pos - tx_start) != c.crc) break;
            pos += sizeof c;
            for (auto& e : pending) entries.push_back(std::move(e));
            pending.clear();
            committed_end = tx_start = pos;
        } else {
            break;
        }
    }
    if (committed_end != data.size() && ::ftruncate(fd, static_cast<off_t>(committed_end)) != 0) {
        error = errno_text("cannot cut the torn end of the journal");
        return false;
    }
    return true;
}

}  // namespace

// ---------------------------------------------------------------- writer

struct StoreWriter::Impl {
    const Config* cfg = nullptr;
    Config cfg_copy;
    std::string dir, path, journal_path;
    Fd lock_fd, journal_fd;
    Mapping map;
    uint64_t journal_bytes = 0;
    uint64_t journal_last_seq = 0;  // last change in the journal file

    Fd notify_fd;               // <dir>/changed, opened at the first change
    std::string notify_warning;  // why the last change was not announced

    LockWait* wait = nullptr;
    bool take_lock(bool init, std::string& error);
    bool open_notify_file(bool init, std::string& error);
    void notify_readers();
    bool open_store(bool init, std::string& error);
    bool recover(std::string& error);
    uint64_t settle_slot(Slot& s, uint64_t w0);
    void retire_leftover();
    bool apply(const std::string& blob, const TargetRecord& r, std::string& error);
    bool ensure_room(uint64_t blob_bytes, uint64_t new_keys, std::string& error);
    // salvage: after a reboot, skip records that are not whole, keep the
    // newest of duplicates, and start from the last checkpoint's seq.
    bool rebuild(uint64_t capacity, uint64_t min_arena, std::string& error, bool salvage = false);
    bool newer_copy_exists(const TargetRecord& r);
    bool checkpoint(std::string& error);
    bool journal_append(const std::vector<std::string>& blobs, const std::vector<uint64_t>& seqs,
                        std::string& error);
    Probe find(std::string_view key, uint64_t& index, SlotCopy& c, uint64_t* insert_at) const {
        return probe(map, key, hash_key(key.data(), key.size()), index, c, insert_at);
    }
};

namespace {

int64_t monotonic_ms() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// Who holds the flock on fd, from /proc/locks ("1: FLOCK ADVISORY WRITE
// <pid> <maj>:<min>:<inode> 0 EOF"; waiters are marked "->").
std::string lock_holder(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return "another process";
    char want[64];
    std::snprintf(want, sizeof want, "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev),
                  static_cast<unsigned long>(st.st_ino));
    const int p = ::open("/proc/locks", O_RDONLY | O_CLOEXEC);
    if (p < 0) return "another process";
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(p, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(p);
    for (std::size_t at = 0, eol; at < text.size(); at = eol + 1) {
        eol = text.find('\n', at);
        if (eol == std::string::npos) eol = text.size();
        const std::string line = text.substr(at, eol - at);
        if (line.find("FLOCK") == std::string::npos || line.find("->") != std::string::npos) continue;
        const std::size_t dev = line.find(std::string(" ") + want + " ");
        if (dev == std::string::npos) continue;
        const std::size_t pid_start = line.rfind(' ', dev - 1);  // the pid ends where the device begins
        if (pid_start == std::string::npos) continue;
        return "pid " + line.substr(pid_start + 1, dev - pid_start - 1);
    }
    return "another process";
}

}  // namespace

bool StoreWriter::Impl::take_lock(bool init, std::string& error) {
    if (init) {
        if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
            error = errno_text("cannot create " + dir);
            return false;
        }
        Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!d.ok() || !set_owner(d.get(), cfg->read_group, 0750, error)) {
            if (error.empty()) error = errno_text("cannot open " + dir);
            return false;
        }
    }
    const std::string lock_path = dir + "/lock";
    // 0660 root:write_group: a reader (a mail user in read_group) must not be able
    // to open it, or it could hold the lock and stall every writer, Exim's too.
    lock_fd = Fd(::open(lock_path.c_str(), O_RDWR | (init ? O_CREAT : 0) | O_CLOEXEC, 0660));
    if (!lock_fd.ok()) {
        error = errno == ENOENT ? "no store at " + dir + " (run: mailsuspend init)"
                                : errno_text("cannot open " + lock_path);
        return false;
    }
    if (init && !set_owner(lock_fd.get(), cfg->write_group, 0660, error)) return false;
    // flock: released by the kernel when this process dies, however it dies.
    // Polled with a deadline: nobody waits on it without a bound (a held lock
    // must not stall a mail server's process, nor an admin forever).
    const int64_t timeout_ms = wait && wait->timeout_ms >= 0 ? wait->timeout_ms : cfg->admin_lock_timeout * 1000;
    const int64_t start = monotonic_ms();
    bool told = false;
    for (int64_t pause_us = 500;;) {
        if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) == 0) return true;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) {
            error = errno_text("cannot lock " + lock_path);
            return false;
        }
        const int64_t waited = monotonic_ms() - start;
        if (waited >= timeout_ms) {
            if (wait) wait->busy = true;
            error = "the store's writer lock " + lock_path + " is held by " + lock_holder(lock_fd.get()) +
                    " (gave up after " + std::to_string(waited) + " ms)";
            return false;
        }
        if (!told && waited >= 1000 && wait && wait->waiting) {
            wait->waiting(lock_holder(lock_fd.get()));
            told = true;
        }
        const int64_t left_us = (timeout_ms - waited) * 1000;
        const struct timespec pause{0, static_cast<long>(std::min(pause_us, std::max<int64_t>(left_us, 100)) * 1000)};
        ::nanosleep(&pause, nullptr);
        pause_us = std::min<int64_t>(pause_us * 2, timeout_ms < 1000 ? 5'000 : 50'000);
    }
}

bool StoreWriter::Impl::open_store(bool init, std::string& error) {
    if (::access(path.c_str(), F_OK) != 0) {
        if (!init) {
            error = "no store at " + path + " (run: mailsuspend init)";
            return false;
        }
        const std::string tmp = path + ".new";
        const Geometry g = geometry_for(cfg->store_capacity, 0);
        if (!create_store_file(tmp, cfg->store_capacity, g, 1, 0, *cfg, error)) return false;
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            error = errno_text("cannot publish " + path);
            return false;
        }
        fsync_dir(dir);
    }
    if (!map_file(path, true, map, error)) return false;
    {
        // A store made by an older build may be sparse: allocate it before
        // this writer stores into the mapping (cheap when already allocated).
        Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd.ok()) {
            error = errno_text("cannot open " + path);
            return false;
        }
        if (!allocate(fd.get(), map.region.get_size(), path, error)) return false;
    }
    retire_leftover();
    // 0660: readers need only the store; the journal keeps lifted reasons and actors.
    journal_fd = Fd(::open(journal_path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0660));
    if (!journal_fd.ok()) {
        error = errno_text("cannot open " + journal_path);
        return false;
    }
    if (init && !set_owner(journal_fd.get(), cfg->write_group, 0660, error)) return false;
    return !init || open_notify_file(true, error);
}

// Opens <dir>/changed for writing, creating it (0664, write_group) when it
// is missing; init also repairs the owner and mode of an existing one.
// O_NONBLOCK | O_NOFOLLOW and the regular-file check: whatever sits at
// that name, a writer (Exim among them) never blocks on it.
bool StoreWriter::Impl::open_notify_file(bool init, std::string& error) {
    const std::string notify_path = notify_file_path(dir);
    constexpr int kFlags = O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    Fd fd(::open(notify_path.c_str(), kFlags));
    bool created = false;
    if (!fd.ok() && errno == ENOENT) {
        fd = Fd(::open(notify_path.c_str(), kFlags | O_CREAT | O_EXCL, 0664));
        created = fd.ok();
    }
    struct stat st {};
    if (!fd.ok() || ::fstat(fd.get(), &st) != 0) {
        error = errno_text("cannot open " + notify_path);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        error = notify_path + " is not a regular file";
        return false;
    }
    if ((created || init) && !set_owner(fd.get(), cfg->write_group, 0664, error)) {
        error = notify_path + ": " + error;
        return false;
    }
    notify_fd = std::move(fd);
    return true;
}

// Announces an applied change to readers waiting on the notify file.  A
// failure is a warning: the change stands, readers see it at their next
// timed re-check.
void StoreWriter::Impl::notify_readers() {
    notify_warning.clear();
    if (!notify_fd.ok() && !open_notify_file(false, notify_warning)) return;
    char text[32];
    const int n = std::snprintf(text, sizeof text, "%020llu\n",
                                static_cast<unsigned long long>(map.header->seq.load()));
    if (::pwrite(notify_fd.get(), text, static_cast<std::size_t>(n), 0) != n) {
        notify_warning = errno_text("cannot write " + notify_file_path(dir));
        notify_fd.reset();
    }
}

// A writer that died publishing a generation (see rebuild) left the old file
// linked as store.retiring without its retired flag, so readers still mapping
// it would read it forever: raise the flag now.  The same inode as the store
// means it died before the rename: nothing to tell.
void StoreWriter::Impl::retire_leftover() {
    const std::string retiring = path + ".retiring";
    struct stat st {};
    if (::stat(retiring.c_str(), &st) != 0) return;
    Mapping old;
    std::string why;
    if ((st.st_dev != map.dev || st.st_ino != map.ino) && map_file(retiring, true, old, why))
        old.header->retired.store(1, std::memory_order_release);
    ::unlink(retiring.c_str());
}

// A slot a dead writer left mid-write mixes words of the old and the new
// image.  Its blob word points at one whole record, old or new (blobs are
// written before the slot and never change): when that record is the
// fingerprint's key, the slot shows it; otherwise the slot was being taken
// for a new key and held no record: a tombstone.  Either way readers see a
// state that was written (a suspended key never vanishes, even if this
// repair dies too); the journal replay then writes the newest.
uint64_t StoreWriter::Impl::settle_slot(Slot& s, uint64_t w0) {
    const SlotCopy c{w0, s.fingerprint.load(), s.blob.load(), 0};
    TargetRecord r;
    std::string why;
    uint64_t settled = make_w0(w0_seq(w0) + 1, kTombstone, 0, 0, 0);
    if (c.blob_offset() != 0 && decode_slot(map, c, r, why) &&
        hash_key(r.key.data(), r.key.size()) == c.fingerprint) {
        s.expiry.store(min_expiry(r), std::memory_order_relaxed);
        settled = make_w0(w0_seq(w0) + 1, kUsed, static_cast<uint8_t>(r.key.size()),
                          static_cast<uint8_t>(r.mode), suspended_mask(r));
    }
    s.word0.store(settled, std::memory_order_release);
    return settled;
}

// Repairs what a dead writer or a reboot left: slots caught mid-write are
// settled (settle_slot), then every committed journal entry not yet applied is
// applied again (entries are whole record images, so applying twice is harmless).
bool StoreWriter::Impl::recover(std::string& error) {
    Header& h = *map.header;
    const bool rebooted = std::strncmp(h.boot_id, current_boot_id().c_str(), sizeof h.boot_id) != 0;
    // A dead writer's change (repaired or replayed here) was never announced.
    bool announce = h.dirty.load() || rebooted;
    if (announce) {
        // Recount too: apply() counts a newly used slot before writing it.
        uint64_t occupied = 0;
        for (uint64_t i = 0; i < map.slot_count; ++i) {
            Slot& s = map.slots[i];
            uint64_t w = s.word0.load(std::memory_order_relaxed);
            if (w0_seq(w) & 1) w = settle_slot(s, w);
            if (w0_state(w) != kEmpty) ++occupied;
        }
        h.used_slots.store(occupied);
    }
    std::vector<JournalEntry> entries;
    if (!read_journal(journal_fd.get(), entries, error)) return false;
    if (!entries.empty()) journal_last_seq = entries.back().seq;
    const uint64_t from = rebooted ? h.checkpoint_seq.load() : h.seq.load();
    // After a reboot the file holds, page by page, the last checkpoint or
    // anything newer the kernel wrote back: slots may point at blobs that
    // never reached the disk, or a key sit in two slots.  Copy what is whole
    // into a new generation; the replay below brings back the rest.
    if (rebooted && !rebuild(h.capacity, map.arena_size, error, true)) return false;
    map.header->dirty.store(1);
    for (const auto& e : entries) {
        if (e.seq <= from) continue;
        TargetRecord r;
        const auto* p = reinterpret_cast<const unsigned char*>(e.blob.data());
        if (!decode_record(p, e.blob.size(), r, error)) {
            error = "journal entry " + std::to_string(e.seq) + ": " + error;
            return false;
        }
        if (!ensure_room(e.blob.size(), 1, error)) return false;
        // ensure_room may have published a new generation: h is gone.
        Header& cur = *map.header;
        cur.dirty.store(1);
        if (!apply(e.blob, r, error)) return false;
        if (e.seq > cur.seq.load()) cur.seq.store(e.seq);
        announce = true;
    }
    map.header->dirty.store(0);
    if (announce) notify_readers();
    struct stat st {};
    journal_bytes = ::fstat(journal_fd.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return rebooted ? checkpoint(error) : true;
}

// Writes one record image into the table (the caller has journaled it).
bool StoreWriter::Impl::apply(const std::string& blob, const TargetRecord& r, std::string& error) {
    Header& h = *map.header;
    uint64_t index = 0, insert_at = UINT64_MAX;
    SlotCopy c;
    const Probe found = find(r.key, index, c, &insert_at);
    if (found == Probe::busy) {
        error = "a slot stayed locked during repair";
        return false;
    }
    const uint64_t fp = hash_key(r.key.data(), r.key.size());
    if (r.empty()) {  // erase: leave a tombstone so probe chains stay intact
        if (found == Probe::found) {
            SlotCopy t{make_w0(0, kTombstone, 0, 0, 0), fp, 0, 0};
            write_slot(map.slots[index], t);
        }
        return true;
    }
    const uint64_t off = h.arena_used.load();
    if (off + blob.size() > map.arena_size) {
        error = "internal: arena full after ensure_room";
        return false;
    }
    std::memcpy(map.arena + off, blob.data(), blob.size());
    h.arena_used.store(off + blob.size());
    if (found != Probe::found) {
        if (insert_at == UINT64_MAX) {
            error = "internal: table full after ensure_room";
            return false;
        }
        index = insert_at;
        if (w0_state(map.slots[index].word0.load()) == kEmpty) h.used_slots.fetch_add(1);
    }
    SlotCopy n{make_w0(0, kUsed, static_cast<uint8_t>(r.key.size()), static_cast<uint8_t>(r.mode),
                       suspended_mask(r)),
               fp, (off << 32) | blob.size(), min_expiry(r)};
    write_slot(map.slots[index], n);
    return true;
}

bool StoreWriter::Impl::ensure_room(uint64_t blob_bytes, uint64_t new_keys, std::string& error) {
    const Header& h = *map.header;
    const bool arena_full = h.arena_used.load() + blob_bytes > map.arena_size;
    const bool table_full = static_cast<double>(h.used_slots.load() + new_keys) >
                            kMaxLoad * static_cast<double>(map.slot_count);
    if (!arena_full && !table_full) return true;
    uint64_t live = 0;
    for (uint64_t i = 0; i < map.slot_count; ++i)
        if (w0_state(map.slots[i].word0.load()) == kUsed) ++live;
    const uint64_t capacity = std::max(h.capacity, (live + new_keys) * 2);
    return rebuild(capacity, (h.arena_used.load() + blob_bytes) * 2, error);
}

// Copies every live record into a new generation and publishes it by rename.
// Salvage only: the new generation already holds key at a later change.
bool StoreWriter::Impl::newer_copy_exists(const TargetRecord& r) {
    uint64_t index = 0;
    SlotCopy c;
    TargetRecord there;
    std::string why;
    return find(r.key, index, c, nullptr) == Probe::found && decode_slot(map, c, there, why) &&
           there.seq >= r.seq;
}

bool StoreWriter::Impl::rebuild(uint64_t capacity, uint64_t min_arena, std::string& error,
                                bool salvage) {
    const Header& old = *map.header;
    const std::string tmp = path + ".new";
    const Geometry g = geometry_for(capacity, min_arena);
    if (g.arena_size < min_arena) {
        error = "the store cannot grow past 4 GiB of records";
        return false;
    }
    const uint64_t seq = salvage ? old.checkpoint_seq.load() : old.seq.load();
    if (!create_store_file(tmp, capacity, g, old.generation + 1, seq, *cfg, error)) return false;
    Mapping fresh;
    if (!map_file(tmp, true, fresh, error)) return false;
    Mapping previous = std::move(map);
    map = std::move(fresh);
    for (uint64_t i = 0; i < previous.slot_count; ++i) {
        const SlotCopy c{previous.slots[i].word0.load(), previous.slots[i].fingerprint.load(),
                         previous.slots[i].blob.load(), previous.slots[i].expiry.load()};
        if (w0_state(c.w0) != kUsed) continue;
        TargetRecord r;
        if (salvage) {
            std::string why;
            if (!decode_slot(previous, c, r, why) || hash_key(r.key.data(), r.key.size()) != c.fingerprint ||
                newer_copy_exists(r))
                continue;
        } else if (!decode_slot(previous, c, r, error)) {
            error = "slot " + std::to_string(i) + ": " + error + " (record dropped from rebuild)";
            map = std::move(previous);
            return false;
        }
        const std::string blob(reinterpret_cast<const char*>(previous.arena + c.blob_offset()),
                               c.blob_length());
        if (!apply(blob, r, error)) {
            map = std::move(previous);
            return false;
        }
    }
    // The outgoing file stays linked as store.retiring until its readers are
    // told: a writer that dies between rename and the retired flag leaves the
    // link, and the next writer raises the flag (retire_leftover).
    const std::string retiring = path + ".retiring";
    ::unlink(retiring.c_str());
    if (::msync(map.region.get_address(), map.region.get_size(), MS_SYNC) != 0 ||
        ::link(path.c_str(), retiring.c_str()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = errno_text("cannot publish the new generation");
        ::unlink(retiring.c_str());
        map = std::move(previous);
        return false;
    }
    fsync_dir(dir);
    previous.header->retired.store(1, std::memory_order_release);  // readers remap
    ::unlink(retiring.c_str());
    return checkpoint(error);
}

// Everything applied is forced to disk, so the journal can start afresh.
bool StoreWriter::Impl::checkpoint(std::string& error) {
    Header& h = *map.header;
    if (::msync(map.region.get_address(), map.region.get_size(), MS_SYNC) != 0) {
        error = errno_text("cannot flush the store");
        return false;
    }
    h.checkpoint_seq.store(h.seq.load());
    std::snprintf(h.boot_id, sizeof h.boot_id, "%s", current_boot_id().c_str());
    if (::msync(map.region.get_address(), kHeaderSize, MS_SYNC) != 0) {
        error = errno_text("cannot checkpoint the store");
        return false;
    }
    // A growth in the middle of a repair: the rest of the journal is not applied yet.
    if (h.seq.load() < journal_last_seq) return true;
    if (::ftruncate(journal_fd.get(), 0) != 0 || ::fdatasync(journal_fd.get()) != 0) {
        error = errno_text("cannot checkpoint the journal");
        return false;
    }
    journal_bytes = 0;
    return true;
}

bool StoreWriter::Impl::journal_append(const std::vector<std::string>& blobs,
                                       const std::vector<uint64_t>& seqs, std::string& error) {
    std::string buf;
    for (std::size_t i = 0; i < blobs.size(); ++i) {
        const JournalEntryHeader h{kJournalEntryMagic, static_cast<uint32_t>(blobs[i].size()), seqs[i]};
        buf.append(reinterpret_cast<const char*>(&h), sizeof h);
        buf += blobs[i];
    }
    const JournalCommit c{kJournalCommitMagic, crc32(buf.data(), buf.size()), seqs.back()};
    buf.append(reinterpret_cast<const char*>(&c), sizeof c);
    const char* p = buf.data();
    std::size_t left = buf.size();
    while (left > 0) {
        const ssize_t n = ::write(journal_fd.get(), p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;  // no errno for a write that wrote nothing
            error = errno_text("cannot write the journal");
            // Nothing half-written may be mistaken for a commit later.
            if (::ftruncate(journal_fd.get(), static_cast<off_t>(journal_bytes)) != 0) {}
            return false;
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    if (::fdatasync(journal_fd.get()) != 0) {
        error = errno_text("cannot sync the journal");
        if (::ftruncate(journal_fd.get(), static_cast<off_t>(journal_bytes)) != 0) {}
        return false;
    }
    journal_bytes += buf.size();
    journal_last_seq = seqs.back();
    return true;
}

StoreWriter::StoreWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreWriter::~StoreWriter() = default;

std::unique_ptr<StoreWriter> StoreWriter::open(const Config& cfg, bool init, std::string& error, LockWait* wait) {
    try {
        auto impl = std::make_unique<Impl>();
        impl->wait = wait;
        impl->cfg_copy = cfg;
        impl->cfg = &impl->cfg_copy;
        impl->dir = cfg.store_path;
        impl->path = impl->dir + "/store";
        impl->journal_path = impl->dir + "/journal";
        if (!impl->take_lock(init, error) || !impl->open_store(init, error) || !impl->recover(error))
            return nullptr;
        return std::unique_ptr<StoreWriter>(new StoreWriter(std::move(impl)));
    } catch (const std::exception& e) {
        error = std::string("cannot open the store: ") + e.what();
        return nullptr;
    }
}

bool StoreWriter::get(std::string_view key, TargetRecord& out, bool* exists) {
    uint64_t index = 0;
    SlotCopy c;
    const Probe p = impl_->find(key, index, c, nullptr);
    if (exists) *exists = p == Probe::found;
    if (p != Probe::found) {
        out = TargetRecord{};
        out.key = std::string(key);
        return p == Probe::absent;
    }
    std::string why;
    return decode_slot(impl_->map, c, out, why);
}

namespace {

// The services a live Dovecot session uses.
constexpr uint8_t kSessionServices = (1u << static_cast<int>(Service::imap)) |
                                     (1u << static_cast<int>(Service::pop3)) |
                                     (1u << static_cast<int>(Service::webmail)) |
                                     (1u << static_cast<int>(Service::sieve));

// Whether the change must wake the sessions waiting on the notify file: it
// puts a session's service in force.  Nothing else ends a session, and the
// rest includes what a remote sender can cause (send suspended, a rate
// suspension extended once a minute per sender), which would otherwise wake
// every Dovecot mail process each time.
bool ends_sessions(const TargetRecord& before, const TargetRecord& after, int64_t now) {
    return (after.in_force_mask(now) & ~before.in_force_mask(now) & kSessionServices) != 0;
}

}  // namespace

uint64_t StoreWriter::commit(std::vector<Change>& changes, std::string& error,
                             const BeforeJournal& before_journal, const std::function<void()>& undo) {
    if (changes.empty()) return impl_->map.header->seq.load();
    // Slots and blobs hold the key length in one byte: refuse, never truncate.
    for (const auto& c : changes) {
        if (c.record.key.empty() || c.record.key.size() > 255) {
            error = "cannot store the key '" + c.record.key.substr(0, 40) +
                    (c.record.key.size() > 40 ? "...'" : "'") + " (" + std::to_string(c.record.key.size()) +
                    " bytes; a key has 1 to 255)";
            return 0;
        }
    }
    try {
        Header* h = impl_->map.header;
        std::vector<std::string> blobs(changes.size());
        std::vector<uint64_t> seqs(changes.size());
        uint64_t blob_bytes = 0, seq = h->seq.load();
        // 0 means failure to the caller and replay orders by seq: never wrap.
        if (seq > UINT64_MAX - changes.size()) {
            error = "the store's change counter is exhausted (" + std::to_string(seq) +
                    "; a damaged header?)";
            return 0;
        }
        bool wake = false;
        const int64_t now = std::time(nullptr);
        for (const auto& c : changes) {
            TargetRecord before;
            // unreadable: wake, to be safe
            wake = wake || !get(c.record.key, before) || ends_sessions(before, c.record, now);
        }
        for (std::size_t i = 0; i < changes.size(); ++i) {
            changes[i].record.seq = seqs[i] = ++seq;
            encode_record(changes[i].record, blobs[i]);
            blob_bytes += blobs[i].size();
        }
        if (!impl_->ensure_room(blob_bytes, changes.size(), error)) return 0;
        if (before_journal && !before_journal(seq, error)) return 0;
        if (!impl_->journal_append(blobs, seqs, error)) {
            if (undo) undo();
            return 0;
        }
        h = impl_->map.header;  // ensure_room may have published a new generation
        h->dirty.store(1);
        for (std::size_t i = 0; i < changes.size(); ++i)
            if (!impl_->apply(blobs[i], changes[i].record, error)) return 0;
        h->seq.store(seq, std::memory_order_release);
        h->dirty.store(0);
        if (wake) impl_->notify_readers();
        else impl_->notify_warning.clear();
        if (impl_->journal_bytes > kCheckpointJournalBytes && !impl_->checkpoint(error)) return 0;
        return seq;
    } catch (const std::exception& e) {
        error = std::string("commit failed: ") + e.what();
        return 0;
    }
}

bool StoreWriter::for_each(const std::function<void(const TargetRecord&)>& fn) {
    const Mapping& m = impl_->map;
    TargetRecord r;
    for (uint64_t i = 0; i < m.slot_count; ++i) {
        SlotCopy c;
        if (!read_slot(m.slots[i], c)) return false;
        if (w0_state(c.w0) != kUsed) continue;
        std::string why;
        if (!decode_slot(m, c, r, why)) return false;
        fn(r);
    }
    return true;
}

bool StoreWriter::rebuild(uint64_t capacity, std::string& error) {
    const Header& h = *impl_->map.header;
    uint64_t live = 0, live_bytes = 0;
    for (uint64_t i = 0; i < impl_->map.slot_count; ++i) {
        const Slot& s = impl_->map.slots[i];
        if (w0_state(s.word0.load()) != kUsed) continue;
        ++live;
        live_bytes += static_cast<uint32_t>(s.blob.load());
    }
    if (capacity == 0) capacity = h.capacity;
    if (capacity < live) {
        error = "capacity " + std::to_string(capacity) + " is below the " + std::to_string(live) +
                " records stored";
        return false;
    }
    try {
        if (!impl_->rebuild(capacity, live_bytes + 4096, error)) return false;
        impl_->notify_readers();  // readers remap by themselves; this wakes waiting ones
        return true;
    } catch (const std::exception& e) {
        error = std::string("rebuild failed: ") + e.what();
        return false;
    }
}

bool StoreWriter::check(std::vector<std::string>& report) {
    const Mapping& m = impl_->map;
    const std::string why = validate_header(*m.header, m.region.get_size());
    if (!why.empty()) report.push_back("header: " + why);
    uint64_t occupied = 0;
    for (uint64_t i = 0; i < m.slot_count; ++i) {
        SlotCopy c;
        if (!read_slot(m.slots[i], c)) {
            report.push_back("slot " + std::to_string(i) + ": left mid-write");
            continue;
        }
        const uint8_t state = w0_state(c.w0);
        if (state == kEmpty) continue;
        ++occupied;
        if (state == kTombstone) continue;
        if (state != kUsed) {
            report.push_back("slot " + std::to_string(i) + ": unknown state " + std::to_string(state));
            continue;
        }
        TargetRecord r;
        std::string err;
        if (!decode_slot(m, c, r, err)) {
            report.push_back("slot " + std::to_string(i) + ": " + err);
            continue;
        }
        uint64_t index = 0;
        SlotCopy found;
        if (hash_key(r.key.data(), r.key.size()) != c.fingerprint ||
            probe(m, r.key, c.fingerprint, index, found) != Probe::found || index != i)
            report.push_back("slot " + std::to_string(i) + ": record " + r.key + " is not reachable");
        if (suspended_mask(r) != w0_suspended(c.w0) || static_cast<uint8_t>(r.mode) != w0_mode(c.w0))
            report.push_back("slot " + std::to_string(i) + ": cached flags disagree with record " + r.key);
    }
    if (occupied != m.header->used_slots.load())
        report.push_back("header counts " + std::to_string(m.header->used_slots.load()) +
                         " used slots, found " + std::to_string(occupied));
    return report.empty();
}

StoreStats StoreWriter::stats() const { return stats_of(impl_->map); }

const std::string& StoreWriter::notify_warning() const { return impl_->notify_warning; }

std::string notify_file_path(const std::string& dir) { return dir + "/changed"; }

std::string notify_file_problem(const std::string& dir) {
    const std::string path = notify_file_path(dir);
    struct stat st {};
    const char* why = nullptr;
    if (::lstat(path.c_str(), &st) != 0)
        why = errno == ENOENT ? "missing" : "cannot be examined";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((st.st_mode & S_IROTH) == 0)
        why = "not readable by the read group (mode should be 0664)";
    if (!why) return {};
    return path + ": " + why + ": live Dovecot sessions re-check every 3 s instead of "
                               "waiting for changes (`mailsuspend init` creates it)";
}

}  // namespace mailsuspend
