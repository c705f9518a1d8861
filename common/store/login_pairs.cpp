#include "login_pairs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "bus_guard.hpp"
#include "store_layout.hpp"
#include "table_file.hpp"

namespace bi = boost::interprocess;

namespace mailsuspend {
namespace {

constexpr uint64_t kMagic = 0x314E474C534D4DULL;  // "MMSLGN1"
constexpr uint32_t kVersion = 1;
constexpr int kNeighbourhood = 16;  // entries probed per pair: two cache lines
constexpr int kClaimAttempts = 4;   // CAS races lost before giving up (unknown)

struct Header {
    uint64_t magic;
    uint32_t version;
    uint32_t entry_size;
    uint64_t entry_count;
    uint64_t file_size;
};

// An entry: fingerprint (36 bits, never 0) << 28 | minute last seen (28
// bits: the Unix minute modulo 2^28, about 510 years).  0 = free.
constexpr int kMinuteBits = 28;
constexpr uint64_t kMinuteMask = (uint64_t{1} << kMinuteBits) - 1;
constexpr uint64_t kWindowMinutes = LoginPairs::kWindow / 60;

uint64_t minute_of(int64_t now) { return static_cast<uint64_t>(now / 60) & kMinuteMask; }

// Minutes since the entry was last seen (modulo the clock's 28 bits).
uint64_t age(uint64_t entry, uint64_t minute) { return (minute - (entry & kMinuteMask)) & kMinuteMask; }

bool recent(uint64_t entry, uint64_t minute) { return entry != 0 && age(entry, minute) < kWindowMinutes; }

// The pair's hash: the mailbox, a NUL, the IP (neither holds a NUL).
uint64_t hash_of(std::string_view mailbox, std::string_view ip) {
    char buf[512];
    if (mailbox.size() + 1 + ip.size() > sizeof buf) return layout::hash_key(mailbox.data(), mailbox.size()) ^ ip.size();
    std::memcpy(buf, mailbox.data(), mailbox.size());
    buf[mailbox.size()] = '\0';
    std::memcpy(buf + mailbox.size() + 1, ip.data(), ip.size());
    return layout::hash_key(buf, mailbox.size() + 1 + ip.size());
}

uint64_t fingerprint_of(uint64_t hash) {
    const uint64_t fp = hash >> kMinuteBits;  // the high 36 bits; the low ones choose the place
    return fp == 0 ? 1 : fp;
}

}  // namespace

struct LoginPairs::Impl {
    bi::mapped_region region;
    const Header* header = nullptr;
    std::atomic<uint64_t>* entries = nullptr;
    uint64_t count = 0;
    uint64_t file_size = 0;
    mutable bool broken = false;

    template <typename F>
    bool guarded(F&& access) const noexcept {
        const auto intact = [this] {
            return header->magic == kMagic && header->entry_count == count && header->file_size == file_size;
        };
        return guarded_table_access(broken, intact, access);
    }

    // The entry of the pair seen within the window, else nullptr; where:
    // that entry's place, else the first free or idle one (nullptr: none).
    std::atomic<uint64_t>* find(uint64_t hash, uint64_t minute, uint64_t& value,
                                std::atomic<uint64_t>*& claimable) const {
        const uint64_t fp = fingerprint_of(hash);
        claimable = nullptr;
        for (int i = 0; i < kNeighbourhood; ++i) {
            std::atomic<uint64_t>& e = entries[(hash + static_cast<uint64_t>(i)) % count];
            const uint64_t v = e.load(std::memory_order_acquire);
            if (v >> kMinuteBits == fp && recent(v, minute)) {
                value = v;
                return &e;
            }
            if (!claimable && !recent(v, minute)) {
                claimable = &e;
                value = v;
            }
        }
        return nullptr;
    }
};

LoginPairs::LoginPairs(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoginPairs::~LoginPairs() = default;

std::unique_ptr<LoginPairs> LoginPairs::open(const std::string& dir, bool create, uint64_t capacity,
                                             std::string& error_r) {
    const std::string path = dir + "/" + kFileName;
    try {
        if (create && ::access(path.c_str(), F_OK) != 0) {
            const uint64_t entries = (capacity ? capacity : 1) * 2;  // half full at capacity
            const uint64_t size = sizeof(Header) + entries * kEntryBytes;
            const Header h{kMagic, kVersion, static_cast<uint32_t>(kEntryBytes), entries, size};
            if (!publish_table_file(path, &h, sizeof h, size, error_r)) return nullptr;
        }
        bi::file_mapping file(path.c_str(), bi::read_write);
        struct stat st {};
        if (::fstat(file.get_mapping_handle().handle, &st) != 0 || static_cast<uint64_t>(st.st_size) < sizeof(Header)) {
            error_r = path + ": missing or truncated";
            return nullptr;
        }
        install_bus_guard();
        auto impl = std::make_unique<Impl>();
        impl->region = bi::mapped_region(file, bi::read_write);
        const auto* h = static_cast<const Header*>(impl->region.get_address());
        bool known = false;
        if (!under_bus_guard([&] {
                known = h->magic == kMagic && h->version == kVersion && h->entry_size == kEntryBytes &&
                        h->file_size == static_cast<uint64_t>(st.st_size) && h->entry_count != 0 &&
                        h->entry_count <= (h->file_size - sizeof(Header)) / kEntryBytes;
            }) ||
            !known) {
            error_r = path + ": not a login pairs file of a layout this build knows (damaged or truncated?)";
            return nullptr;
        }
        impl->header = h;
        impl->count = h->entry_count;
        impl->file_size = h->file_size;
        impl->entries = reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(impl->region.get_address()) +
                                                                 sizeof(Header));
        return std::unique_ptr<LoginPairs>(new LoginPairs(std::move(impl)));
    } catch (const std::exception& e) {
        error_r = path + ": " + e.what();
        return nullptr;
    }
}

LoginPairs::Seen LoginPairs::note(std::string_view mailbox, std::string_view ip, int64_t now) noexcept {
    const uint64_t hash = hash_of(mailbox, ip), minute = minute_of(now);
    const uint64_t fresh_value = fingerprint_of(hash) << kMinuteBits | minute;
    Seen seen = Seen::unknown;
    impl_->guarded([&] {
        // A lost CAS means another login changed the neighbourhood: look again.
        for (int attempt = 0; attempt < kClaimAttempts; ++attempt) {
            uint64_t value = 0;
            std::atomic<uint64_t>* claimable = nullptr;
            if (std::atomic<uint64_t>* e = impl_->find(hash, minute, value, claimable)) {
                if (value == fresh_value || e->compare_exchange_strong(value, fresh_value)) {
                    seen = Seen::again;
                    return;
                }
                continue;
            }
            if (!claimable) return;  // the neighbourhood is full of recent pairs
            if (claimable->compare_exchange_strong(value, fresh_value)) {
                seen = Seen::fresh;
                return;
            }
        }
    });
    return seen;
}

void LoginPairs::forget(std::string_view mailbox, std::string_view ip, int64_t now) noexcept {
    const uint64_t hash = hash_of(mailbox, ip), minute = minute_of(now);
    impl_->guarded([&] {
        uint64_t value = 0;
        std::atomic<uint64_t>* claimable = nullptr;
        if (std::atomic<uint64_t>* e = impl_->find(hash, minute, value, claimable))
            e->compare_exchange_strong(value, 0);
    });
}

bool LoginPairs::seen(std::string_view mailbox, std::string_view ip, int64_t now) const noexcept {
    bool found = false;
    impl_->guarded([&] {
        uint64_t value = 0;
        std::atomic<uint64_t>* claimable = nullptr;
        found = impl_->find(hash_of(mailbox, ip), minute_of(now), value, claimable) != nullptr;
    });
    return found;
}

bool LoginPairs::usable() const noexcept { return !impl_->broken; }

std::vector<std::string> LoginPairs::verify(const std::string& dir) {
    const std::string path = dir + "/" + kFileName;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? std::vector<std::string>{} : std::vector<std::string>{path + ": cannot open: " + std::strerror(errno)};
    struct stat st {};
    Header h{};
    const bool whole = ::fstat(fd, &st) == 0 && ::pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
    ::close(fd);
    if (!whole || h.magic != kMagic || h.version != kVersion || h.entry_size != kEntryBytes ||
        h.file_size != static_cast<uint64_t>(st.st_size) || h.entry_count == 0 ||
        h.entry_count > (h.file_size - sizeof(Header)) / kEntryBytes)
        return {path + ": not a whole login pairs file of this layout (move it aside and run mailsuspend init)"};
    return {};
}

}  // namespace mailsuspend
