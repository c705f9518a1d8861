#include "counters.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "bus_guard.hpp"
#include "store_layout.hpp"
#include "table_file.hpp"

namespace bi = boost::interprocess;

namespace mailsuspend {
namespace {

constexpr uint64_t kCountersMagic = 0x31544E43534D4DULL;  // "MMSCNT1"
constexpr uint32_t kCountersVersion = 1;
constexpr int kMaxProbe = 64;  // a full neighbourhood means "table full": count nothing

struct CountersHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t entry_size;
    uint64_t entry_count;
    uint64_t file_size;
};

// One (key, kind): the fingerprint claims the entry once with a CAS.
struct Entry {
    std::atomic<uint64_t> tag;  // 0 = free; else hash(key) mixed with kind, never 0
    std::atomic<uint64_t> buckets[kBuckets];  // bucket number << 32 | count
};

// A key's tag always has bit 0 set (and is never 1): the same value with bit
// 0 clear marks its entry while another key is claiming it (see take()).
uint64_t tag_of(std::string_view key, CounterKind kind) {
    const uint64_t h = layout::hash_key(key.data(), key.size());
    const uint64_t tag = (h ^ (0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(kind) + 1))) | 1;
    return tag == 1 ? 3 : tag;
}

constexpr uint64_t marked(uint64_t tag) { return tag & ~uint64_t{1}; }
constexpr bool is_marked(uint64_t seen) { return seen != 0 && (seen & 1) == 0; }

}  // namespace

namespace {
// The kinds counted over an hour in five-minute buckets; the others over a day in hourly ones.
bool hour_kind(CounterKind kind) {
    kind = static_cast<CounterKind>(static_cast<uint8_t>(kind) & ~kFleetShareBit);
    return kind == CounterKind::ip_offdomain_rcpts || kind == CounterKind::domain_messages ||
           kind == CounterKind::unknown_rcpts || kind == CounterKind::outbound_outcomes ||
           kind == CounterKind::failed_outcomes || kind == CounterKind::deferral_marks;
}
}  // namespace

int64_t bucket_width(CounterKind kind) { return hour_kind(kind) ? 300 : 3600; }

namespace {

// An entry none of whose buckets can count again: its key has been idle for
// a whole window (a day; two hours for an IP), so the entry may be claimed
// for another key.  Without that, every client IP ever seen would keep its
// entry and a full table would stop all counting.  The key's kind is not
// stored, the bucket numbers tell it: day kinds number hours, hour kinds
// 5-minute periods, so a number past the current hour can only be an hour kind's.
bool idle_bucket(uint64_t v, int64_t now) {
    if (static_cast<uint32_t>(v) == 0) return true;
    const uint64_t hour = static_cast<uint64_t>(now / 3600), tick = static_cast<uint64_t>(now / 300);
    const uint64_t number = v >> 32;
    if (number > hour) return number <= tick && tick - number >= kBuckets;  // an IP's, or a clock ahead
    return hour - number >= kBuckets;
}

// seq_cst: a claim's re-check must see any count that raced its mark (take()).
bool idle(const Entry& e, int64_t now) {
    for (const auto& b : e.buckets)
        if (!idle_bucket(b.load(std::memory_order_seq_cst), now)) return false;
    return true;
}

}  // namespace

// In the 64 spare bytes after the header (zero in files of earlier builds).
struct CountersShared {
    std::atomic<uint64_t> outbox_suspensions;
};
static_assert(sizeof(CountersShared) <= 64);

struct Counters::Impl {
    std::string path;
    bi::mapped_region region;
    const CountersHeader* header = nullptr;
    CountersShared* shared = nullptr;
    Entry* entries = nullptr;
    uint64_t count = 0;
    uint64_t file_size = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    // Set when an access faulted or the header changed under the mapping:
    // from then on nothing is counted through this mapping.
    mutable bool broken = false;

    // The header still says what it said when mapped (garbage written over
    // the file in place, or a truncation, shows here first).  One cache line.
    bool intact() const {
        return header->magic == kCountersMagic && header->version == kCountersVersion &&
               header->entry_size == sizeof(Entry) && header->entry_count == count &&
               header->file_size == file_size;
    }
    // Runs access on the mapping under the SIGBUS guard, after re-checking the
    // header; false (and broken from then on) when the file is not usable.
    template <typename F>
    bool guarded(F&& access) const noexcept {
        return guarded_table_access(broken, [this] { return intact(); }, access);
    }

    // The entry of tag, also while another key is trying to claim it.
    Entry* lookup(uint64_t tag) const {
        uint64_t i = layout::slot_index(tag, count);
        for (int n = 0; n < kMaxProbe; ++n) {
            const uint64_t seen = entries[i].tag.load(std::memory_order_acquire);
            if (seen == tag || seen == marked(tag)) return &entries[i];
            if (seen == 0) return nullptr;
            if (++i == count) i = 0;
        }
        return nullptr;
    }

    // The entry for tag, claiming one when the key has none: the first idle
    // or free entry on its probe path.  The whole path is read first, so a
    // key is never given a second entry in front of its own.
    Entry* claim(uint64_t tag, int64_t now) const {
        uint64_t i = layout::slot_index(tag, count);
        Entry* candidate = nullptr;
        for (int n = 0; n < kMaxProbe; ++n) {
            Entry& e = entries[i];
            const uint64_t seen = e.tag.load(std::memory_order_acquire);
            if (seen == tag || seen == marked(tag)) return &e;  // owns() cancels a claim by another key
            if (seen == 0 || (!candidate && (is_marked(seen) || idle(e, now)))) {
                if (!candidate) candidate = &e;
                if (seen == 0) break;  // the end of the path
            }
            if (++i == count) i = 0;
        }
        return candidate ? take(*candidate, tag, now) : nullptr;
    }

    // Claims e (free, or idle under another key) for tag.  Taking an idle
    // entry is three steps, so that a count its old key makes meanwhile is
    // never handed to the new key: mark the old tag, re-check that the entry
    // is still idle, then hand over.  The old key's counter sees the mark or
    // the new tag after its count (owns()) and cancels the claim or counts
    // again elsewhere; the mark and the count are both seq_cst, so one of the
    // two sides always sees the other.  An entry found marked (a claim under
    // way, or left by a process killed mid-claim) is taken the same way from
    // its second step: every key's claim converges on it, never on a second
    // entry behind it.
    static Entry* take(Entry& e, uint64_t tag, int64_t now) {
        uint64_t seen = e.tag.load(std::memory_order_seq_cst);
        if (seen == tag) return &e;
        if (seen == 0) {
            if (e.tag.compare_exchange_strong(seen, tag, std::memory_order_seq_cst)) return &e;
            return seen == tag ? &e : nullptr;  // another process claimed it for the same key, or not
        }
        const bool marked_here = !is_marked(seen);
        if (marked_here) {
            const uint64_t old = seen;
            if (!idle(e, now) || !e.tag.compare_exchange_strong(seen, marked(old), std::memory_order_seq_cst))
                return nullptr;  // busy: the caller counts nothing this attempt
            seen = marked(old);
        }
        if (!idle(e, now)) {  // the old key counted between the looks: it keeps its entry
            uint64_t mark = seen;
            if (marked_here) e.tag.compare_exchange_strong(mark, seen | 1, std::memory_order_seq_cst);
            return nullptr;
        }
        if (!e.tag.compare_exchange_strong(seen, tag, std::memory_order_seq_cst))
            return seen == tag ? &e : nullptr;  // cancelled by the old key, or taken by another claim
        // The old key's buckets could still confuse the new key's (an IP's
        // numbers look like a future hour): clear those nobody rewrote since.
        for (auto& b : e.buckets) {
            uint64_t v = b.load(std::memory_order_relaxed);
            if (v != 0 && idle_bucket(v, now)) b.compare_exchange_strong(v, 0, std::memory_order_acq_rel);
        }
        return &e;
    }

    // After counting into e: e is still tag's entry.  A claim by another key
    // that is under way is cancelled (the key is active again).
    static bool owns(Entry& e, uint64_t tag) {
        uint64_t seen = e.tag.load(std::memory_order_seq_cst);
        if (seen == marked(tag) && e.tag.compare_exchange_strong(seen, tag, std::memory_order_seq_cst)) return true;
        return seen == tag;
    }
};

Counters::Counters(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Counters::~Counters() = default;

bool publish_table_file(const std::string& path, const void* header, std::size_t header_size, uint64_t size,
                        std::string& error_r) {
    std::string tmp = path + ".XXXXXX";
    const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0) {
        error_r = "cannot create " + tmp + ": " + std::strerror(errno);
        return false;
    }
    int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (rc == 0) errno = 0;
    else errno = rc;
    bool ok = rc == 0 && ::pwrite(fd, header, header_size, 0) == static_cast<ssize_t>(header_size) &&
              ::fchmod(fd, 0660) == 0 && (::link(tmp.c_str(), path.c_str()) == 0 || errno == EEXIST);
    if (!ok) error_r = "cannot create " + path + ": " + std::strerror(errno ? errno : EIO);
    ::close(fd);
    ::unlink(tmp.c_str());
    return ok;
}

namespace {
bool create_file(const std::string& path, uint64_t capacity, std::string& error_r) {
    const uint64_t entries = capacity * 2;  // half full at capacity: short probes
    const uint64_t size = sizeof(CountersHeader) + 64 + entries * sizeof(Entry);
    const CountersHeader h{kCountersMagic, kCountersVersion, sizeof(Entry), entries, size};
    return publish_table_file(path, &h, sizeof h, size, error_r);
}
}  // namespace

std::unique_ptr<Counters> Counters::open(const std::string& dir, bool create, uint64_t capacity,
                                         std::string& error_r, const char* name) {
    const std::string path = dir + "/" + name;
    try {
        if (create && ::access(path.c_str(), F_OK) != 0 && !create_file(path, capacity, error_r))
            return nullptr;
        bi::file_mapping file(path.c_str(), bi::read_write);
        struct stat st {};
        if (::fstat(file.get_mapping_handle().handle, &st) != 0 ||
            static_cast<uint64_t>(st.st_size) < sizeof(CountersHeader) + 64) {
            error_r = path + ": missing or truncated";
            return nullptr;
        }
        install_bus_guard();
        auto impl = std::make_unique<Impl>();
        impl->path = path;
        impl->region = bi::mapped_region(file, bi::read_write);
        const auto* h = static_cast<const CountersHeader*>(impl->region.get_address());
        bool known = false;
        // The file may shrink between fstat and here: read the header guarded.
        if (!under_bus_guard([&] {
                known = h->magic == kCountersMagic && h->version == kCountersVersion &&
                        h->entry_size == sizeof(Entry) && h->file_size == static_cast<uint64_t>(st.st_size) &&
                        h->entry_count != 0 &&
                        h->entry_count <= (h->file_size - sizeof(CountersHeader) - 64) / sizeof(Entry);
            }) ||
            !known || impl->region.get_size() != static_cast<std::size_t>(st.st_size)) {
            error_r = path + ": not a counters file of a layout this build knows (damaged or truncated?)";
            return nullptr;
        }
        impl->header = h;
        impl->count = h->entry_count;
        impl->file_size = h->file_size;
        impl->dev = st.st_dev;
        impl->ino = st.st_ino;
        impl->shared = reinterpret_cast<CountersShared*>(static_cast<char*>(impl->region.get_address()) +
                                                         sizeof(CountersHeader));
        impl->entries = reinterpret_cast<Entry*>(static_cast<char*>(impl->region.get_address()) +
                                                 sizeof(CountersHeader) + 64);
        return std::unique_ptr<Counters>(new Counters(std::move(impl)));
    } catch (const std::exception& e) {
        error_r = path + ": " + e.what();
        return nullptr;
    }
}

namespace {
// Total of the window ending in bucket current.  skip: a bucket whose value
// the caller already knows (the one its own CAS just wrote), else nullptr.
// An hour kind's window is one hour: 12 of the 24 five-minute buckets (the
// other 12 only hold counts that have already left the window).
uint64_t window_buckets(CounterKind kind) { return hour_kind(kind) ? 12 : kBuckets; }

// Bucket number `number` is inside the window ending in bucket `current`.
bool in_window(uint64_t number, uint64_t current, uint64_t width) {
    return number <= current && current - number < width;
}

int64_t window_total(const Entry& e, uint64_t current, uint64_t width,
                     const std::atomic<uint64_t>* skip = nullptr) {
    int64_t total = 0;
    for (const auto& b : e.buckets) {
        if (&b == skip) continue;
        const uint64_t v = b.load(std::memory_order_relaxed);
        const uint64_t number = v >> 32;
        if (in_window(number, current, width)) total += static_cast<uint32_t>(v);
    }
    return total;
}
}  // namespace

namespace {
// Adds n to e's current bucket unless that would take the window's total past
// max (max < 0: no bound).  Returns the total with n, added or not: above max
// means nothing was added, so a refused message never inflates the count
// that other senders' messages are measured against.
int64_t count_into(Entry& e, CounterKind kind, uint32_t n, int64_t max, int64_t now) {
    const uint64_t number = static_cast<uint64_t>(now / bucket_width(kind));
    auto& bucket = e.buckets[number % kBuckets];
    uint64_t v = bucket.load(std::memory_order_relaxed);
    while (true) {
        if ((v >> 32) > number)  // a clock ahead of ours already reused it: count nothing
            return window_total(e, number, window_buckets(kind));
        // Same bucket number: add; an older one: this CAS resets and counts at once.
        const uint64_t next = (v >> 32) == number ? v + n : (number << 32) | n;
        // The current bucket counts as our CAS leaves it, not as re-read later:
        // each caller sees a distinct total, so a limit lets through exactly
        // its number however many processes add at once.
        const int64_t total = window_total(e, number, window_buckets(kind), &bucket) + static_cast<uint32_t>(next);
        if (max >= 0 && total > max) return total;
        if (bucket.compare_exchange_weak(v, next, std::memory_order_seq_cst)) return total;
    }
}

void take_back(Entry& e, CounterKind kind, uint32_t n, int64_t when) {
    const uint64_t number = static_cast<uint64_t>(when / bucket_width(kind));
    auto& bucket = e.buckets[number % kBuckets];
    uint64_t v = bucket.load(std::memory_order_relaxed);
    // Only while the bucket still holds that time's counts: once reused they are gone anyway.
    while ((v >> 32) == number && static_cast<uint32_t>(v) >= n)
        if (bucket.compare_exchange_weak(v, v - n, std::memory_order_acq_rel)) break;
}
}  // namespace

int64_t Counters::add(std::string_view key, CounterKind kind, uint32_t n, int64_t now) noexcept {
    return add_within(key, kind, n, -1, now);
}

int64_t Counters::add_within(std::string_view key, CounterKind kind, uint32_t n, int64_t max,
                             int64_t now) noexcept {
    if (now < 0) return -1;
    const uint64_t tag = tag_of(key, kind);
    int64_t result = -1;
    // A few tries: the entry may be claimed for another key between finding
    // and counting (it was idle), and claiming may lose a race.
    const bool usable = impl_->guarded([&] {
        for (int attempt = 0; attempt < 4; ++attempt) {
            Entry* e = impl_->claim(tag, now);
            if (!e) continue;
            const int64_t total = count_into(*e, kind, n, max, now);
            if ((max >= 0 && total > max) || Impl::owns(*e, tag)) {
                result = total;  // over max: nothing added
                return;
            }
            take_back(*e, kind, n, now);  // counted into the entry's new key: undo, count again
        }
    });
    return usable ? result : -1;
}

void Counters::remove(std::string_view key, CounterKind kind, uint32_t n, int64_t when) noexcept {
    const uint64_t tag = tag_of(key, kind);
    impl_->guarded([&] {
        Entry* e = impl_->lookup(tag);
        if (e && when >= 0) take_back(*e, kind, n, when);
    });
}

void Counters::reset(std::string_view key, CounterKind kind) noexcept {
    const uint64_t tag = tag_of(key, kind);
    impl_->guarded([&] {
        Entry* e = impl_->lookup(tag);
        if (!e) return;
        for (auto& b : e->buckets) b.store(0, std::memory_order_release);
    });
}

int64_t Counters::total(std::string_view key, CounterKind kind, int64_t now) const noexcept {
    const uint64_t tag = tag_of(key, kind);
    int64_t result = 0;
    const bool usable = impl_->guarded([&] {
        const Entry* e = impl_->lookup(tag);
        if (e) result = window_total(*e, static_cast<uint64_t>(now / bucket_width(kind)), window_buckets(kind));
    });
    return usable ? result : -1;
}

bool Counters::usable() const noexcept { return impl_->guarded([] {}); }

void Counters::note_outbox_suspensions(int delta) noexcept {
    impl_->guarded([&] {
        std::atomic<uint64_t>& n = impl_->shared->outbox_suspensions;
        uint64_t seen = n.load(std::memory_order_relaxed);
        uint64_t next;
        do next = delta >= 0 ? seen + static_cast<uint64_t>(delta)
                             : seen - std::min(seen, static_cast<uint64_t>(-int64_t{delta}));
        while (!n.compare_exchange_weak(seen, next, std::memory_order_seq_cst));
    });
}

void Counters::raise_outbox_suspensions(uint64_t at_least) noexcept {
    impl_->guarded([&] {
        std::atomic<uint64_t>& n = impl_->shared->outbox_suspensions;
        uint64_t seen = n.load(std::memory_order_relaxed);
        while (seen < at_least && !n.compare_exchange_weak(seen, at_least, std::memory_order_seq_cst)) {
        }
    });
}

uint64_t Counters::outbox_suspensions() const noexcept {
    uint64_t n = UINT64_MAX;
    if (!impl_->guarded([&] { n = impl_->shared->outbox_suspensions.load(std::memory_order_seq_cst); }))
        return UINT64_MAX;
    return n;
}

bool Counters::replaced() const noexcept {
    struct stat st {};
    if (::stat(impl_->path.c_str(), &st) != 0) return true;
    return st.st_dev != impl_->dev || st.st_ino != impl_->ino ||
           static_cast<uint64_t>(st.st_size) != impl_->file_size;
}

std::vector<std::string> Counters::verify(const std::string& dir, const char* name) {
    const std::string path = dir + "/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return {};
        return {path + ": cannot open: " + std::strerror(errno)};
    }
    struct stat st {};
    CountersHeader h{};
    const bool stat_ok = ::fstat(fd, &st) == 0;
    const ssize_t got = ::pread(fd, &h, sizeof h, 0);
    ::close(fd);
    if (!stat_ok) return {path + ": cannot stat"};
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (got != static_cast<ssize_t>(sizeof h) || size < sizeof(CountersHeader) + 64)
        return {path + ": missing or truncated (" + std::to_string(size) +
                " bytes; move it aside and run mailsuspend init to make a new one)"};
    if (h.magic != kCountersMagic || h.version != kCountersVersion || h.entry_size != sizeof(Entry))
        return {path + ": not a counters file of a layout this build knows (move it aside and run "
                       "mailsuspend init)"};
    if (h.file_size != size)
        return {path + ": file is " + std::to_string(size) + " bytes, header says " +
                std::to_string(h.file_size) + " (truncated or overwritten; move it aside and run mailsuspend init)"};
    if (h.entry_count == 0 || h.entry_count > (size - sizeof(CountersHeader) - 64) / sizeof(Entry))
        return {path + ": inconsistent geometry in header (move it aside and run mailsuspend init)"};
    return {};
}

int64_t window_length(CounterKind kind) {
    return static_cast<int64_t>(window_buckets(kind)) * bucket_width(kind);
}

std::vector<NumberedBucket> Counters::buckets(std::string_view key, CounterKind kind, int64_t now) const {
    std::vector<NumberedBucket> out;
    if (now < 0) return out;
    // Copied under the SIGBUS guard first: the vector allocates, which must not run inside it.
    uint64_t copy[kBuckets] = {};
    bool found = false;
    const uint64_t tag = tag_of(key, kind);
    if (!impl_->guarded([&] {
            const Entry* e = impl_->lookup(tag);
            if (!e) return;
            found = true;
            for (int i = 0; i < kBuckets; ++i) copy[i] = e->buckets[i].load(std::memory_order_relaxed);
        }) ||
        !found)
        return out;
    const uint64_t width = window_buckets(kind), current = static_cast<uint64_t>(now / bucket_width(kind));
    for (const uint64_t v : copy)
        if (static_cast<uint32_t>(v) != 0 && in_window(v >> 32, current, width))
            out.push_back({v >> 32, static_cast<uint32_t>(v)});
    return out;
}

std::vector<CountedBucket> Counters::window(std::string_view key, CounterKind kind, int64_t now) const {
    std::vector<CountedBucket> out;
    const uint64_t width = window_buckets(kind);
    for (const NumberedBucket& b : buckets(key, kind, now))
        // total() stops counting bucket n once the current bucket is n + width.
        out.push_back({static_cast<int64_t>((b.number + width) * static_cast<uint64_t>(bucket_width(kind))), b.count});
    std::sort(out.begin(), out.end(), [](const CountedBucket& a, const CountedBucket& b) { return a.leaves < b.leaves; });
    return out;
}

bool Counters::set_buckets(std::string_view key, CounterKind kind, const std::vector<NumberedBucket>& buckets,
                           int64_t now) noexcept {
    if (now < 0) return false;
    const uint64_t tag = tag_of(key, kind);
    const uint64_t width = window_buckets(kind), current = static_cast<uint64_t>(now / bucket_width(kind));
    uint64_t values[kBuckets] = {};
    for (const NumberedBucket& b : buckets)
        if (b.count != 0 && in_window(b.number, current, width)) values[b.number % kBuckets] = b.number << 32 | b.count;
    bool stored = false;
    const bool usable = impl_->guarded([&] {
        Entry* e = impl_->lookup(tag);
        if (!e && !buckets.empty()) e = impl_->claim(tag, now);
        if (!e) {
            stored = buckets.empty();  // nothing to clear, or no room
            return;
        }
        for (int i = 0; i < kBuckets; ++i) e->buckets[i].store(values[i], std::memory_order_seq_cst);
        stored = Impl::owns(*e, tag);
    });
    return usable && stored;
}

}  // namespace mailsuspend
