#include "count_log.hpp"

#include <sys/stat.h>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <atomic>
#include <cstring>

#include "bus_guard.hpp"
#include "table_file.hpp"

namespace bi = boost::interprocess;

namespace mailsuspend {
namespace {

constexpr uint64_t kCountLogMagic = 0x31474C43534D4DULL;  // "MMSCLG1"
constexpr uint32_t kCountLogVersion = 1;
// 16 Ki slots: at 1,000 messages a second, 16 s of messages for an agent
// that reads once a second.
constexpr uint64_t kSlotCount = 16384;
constexpr std::size_t kTextWords = (CountLog::kMaxSender + CountLog::kMaxIp + 7) / 8;

struct CountLogHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t slot_size;
    uint64_t slot_count;
    uint64_t file_size;
};

// In the 64 bytes after the header.
struct CountLogShared {
    std::atomic<uint64_t> head;  // the next position to claim
};
static_assert(sizeof(CountLogShared) <= 64);

// The record at position p is whole while done == p + 1 (0: being written).
// The text is sender then IP, packed into words so that every access is atomic.
struct Slot {
    std::atomic<uint64_t> done;
    std::atomic<uint32_t> lengths;  // sender length << 8 | IP length
    uint32_t pad;
    std::atomic<uint64_t> text[kTextWords];
};

constexpr uint64_t kFileSize = sizeof(CountLogHeader) + 64 + kSlotCount * sizeof(Slot);

}  // namespace

struct CountLog::Impl {
    bi::mapped_region region;
    const CountLogHeader* header = nullptr;
    CountLogShared* shared = nullptr;
    Slot* slots = nullptr;
    mutable bool broken = false;

    bool intact() const {
        return header->magic == kCountLogMagic && header->version == kCountLogVersion &&
               header->slot_size == sizeof(Slot) && header->slot_count == kSlotCount &&
               header->file_size == kFileSize;
    }
    template <typename F>
    bool guarded(F&& access) const noexcept {
        return guarded_table_access(broken, [this] { return intact(); }, access);
    }
};

CountLog::CountLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CountLog::~CountLog() = default;

std::unique_ptr<CountLog> CountLog::open(const std::string& dir, bool create, std::string& error_r) noexcept {
    const std::string path = dir + "/" + kName;
    try {
        const CountLogHeader h{kCountLogMagic, kCountLogVersion, sizeof(Slot), kSlotCount, kFileSize};
        if (create && ::access(path.c_str(), F_OK) != 0 && !publish_table_file(path, &h, sizeof h, kFileSize, error_r))
            return nullptr;
        bi::file_mapping file(path.c_str(), bi::read_write);
        struct stat st {};
        if (::fstat(file.get_mapping_handle().handle, &st) != 0 || static_cast<uint64_t>(st.st_size) != kFileSize) {
            error_r = path + ": missing, truncated or of another layout (move it aside and run mailsuspend init)";
            return nullptr;
        }
        install_bus_guard();
        auto impl = std::make_unique<Impl>();
        impl->region = bi::mapped_region(file, bi::read_write);
        char* base = static_cast<char*>(impl->region.get_address());
        impl->header = reinterpret_cast<const CountLogHeader*>(base);
        impl->shared = reinterpret_cast<CountLogShared*>(base + sizeof(CountLogHeader));
        impl->slots = reinterpret_cast<Slot*>(base + sizeof(CountLogHeader) + 64);
        if (!impl->guarded([] {})) {
            error_r = path + ": not a count log of a layout this build knows (move it aside and run mailsuspend init)";
            return nullptr;
        }
        return std::unique_ptr<CountLog>(new CountLog(std::move(impl)));
    } catch (const std::exception& e) {
        error_r = path + ": " + e.what();
        return nullptr;
    }
}

namespace {

void store_text(Slot& s, std::string_view sender, std::string_view ip) {
    char bytes[kTextWords * 8] = {};
    std::memcpy(bytes, sender.data(), sender.size());
    std::memcpy(bytes + sender.size(), ip.data(), ip.size());
    const std::size_t words = (sender.size() + ip.size() + 7) / 8;
    for (std::size_t i = 0; i < words; ++i) {
        uint64_t w;
        std::memcpy(&w, bytes + i * 8, 8);
        s.text[i].store(w, std::memory_order_relaxed);
    }
    s.lengths.store(static_cast<uint32_t>(sender.size() << 8 | ip.size()), std::memory_order_relaxed);
}

// A record copied out of its slot (raw bytes: nothing allocates under the SIGBUS guard).
struct Copied {
    std::size_t sender = 0, ip = 0;
    char bytes[kTextWords * 8];
};

// Copies the record at position p; false when it is not (or no longer) p's.
bool load_record(const Slot& s, uint64_t p, Copied& out) {
    if (s.done.load(std::memory_order_acquire) != p + 1) return false;
    const uint32_t lengths = s.lengths.load(std::memory_order_relaxed);
    out.sender = lengths >> 8;
    out.ip = lengths & 0xFF;
    if (out.sender > CountLog::kMaxSender || out.ip > CountLog::kMaxIp) return false;
    for (std::size_t i = 0; i < (out.sender + out.ip + 7) / 8; ++i) {
        const uint64_t w = s.text[i].load(std::memory_order_relaxed);
        std::memcpy(out.bytes + i * 8, &w, 8);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    return s.done.load(std::memory_order_relaxed) == p + 1;  // else overwritten while copied
}

}  // namespace

void CountLog::append(std::string_view sender, std::string_view client_ip) noexcept {
    if (sender.empty() || sender.size() > kMaxSender || client_ip.size() > kMaxIp) return;
    impl_->guarded([&] {
        const uint64_t p = impl_->shared->head.fetch_add(1, std::memory_order_relaxed);
        Slot& s = impl_->slots[p % kSlotCount];
        s.done.store(0, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);  // readers see 0 before any new text
        store_text(s, sender, client_ip);
        s.done.store(p + 1, std::memory_order_release);
    });
}

uint64_t CountLog::head() const noexcept {
    uint64_t h = 0;
    impl_->guarded([&] { h = impl_->shared->head.load(std::memory_order_acquire); });
    return h;
}

uint64_t CountLog::slots() const noexcept { return kSlotCount; }

bool CountLog::usable() const noexcept { return impl_->guarded([] {}); }

uint64_t CountLog::read(uint64_t from, bool skip_unfinished, std::vector<CountedMessage>& out,
                        uint64_t& lost_r) const {
    lost_r = 0;
    const uint64_t head = this->head();
    if (head < from) return head;  // a new file: start over
    if (head - from > kSlotCount) {
        lost_r = head - from - kSlotCount;
        from = head - kSlotCount;
    }
    // Copied under the SIGBUS guard a slot at a time: the vector allocates outside it.
    for (uint64_t p = from; p < head; ++p) {
        const Slot& s = impl_->slots[p % kSlotCount];
        Copied c;
        bool whole = false;
        uint64_t done = 0;
        if (!impl_->guarded([&] {
                whole = load_record(s, p, c);
                done = s.done.load(std::memory_order_relaxed);
            }))
            return p;
        if (whole) {
            out.push_back({std::string(c.bytes, c.sender), std::string(c.bytes + c.sender, c.ip)});
            continue;
        }
        if (done > p + 1 || skip_unfinished) {  // lapped by a writer, or its writer died
            ++lost_r;
            skip_unfinished = false;  // only the one slot seen unfinished before
            continue;
        }
        return p;  // a writer is still at it: next time
    }
    return head;
}

}  // namespace mailsuspend
