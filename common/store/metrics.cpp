#include "metrics.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bus_guard.hpp"

namespace mailsuspend::metrics {

std::optional<AutoCause> cause_of_limit(std::string_view limit) {
    for (std::size_t i = 0; i < std::size(kAutoCauseNames); ++i)
        if (static_cast<AutoCause>(i) != AutoCause::spam && limit == kAutoCauseNames[i])
            return static_cast<AutoCause>(i);
    return std::nullopt;
}

const char* class_name(HostClass c) { return c == HostClass::dovecot ? "dovecot" : "exim"; }

std::string path_of(const std::string& store_path, HostClass c) {
    return store_path + "/metrics-" + class_name(c);
}

namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// The header of a valid file for this build, read from fd (st: its fstat).
bool valid_header(int fd, const struct stat& st, std::string& error_r) {
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != kFileSize) {
        error_r = "not a metrics file (size " + std::to_string(st.st_size) + ", want " +
                  std::to_string(kFileSize) + ")";
        return false;
    }
    Header h{};
    if (::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
        error_r = errno_text("cannot read the header");
        return false;
    }
    if (h.magic != kMagic || h.version != kVersion || h.slot_count != kMetricSlots || h.file_size != kFileSize) {
        error_r = "not a metrics file of a layout this build knows (magic, version or size)";
        return false;
    }
    return true;
}

bool valid_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    struct stat st {};
    std::string ignored;
    const bool ok = ::fstat(fd, &st) == 0 && valid_header(fd, st, ignored);
    ::close(fd);
    return ok;
}

}  // namespace

bool create(const std::string& store_path, HostClass c, gid_t gid, std::string& error_r) {
    const std::string path = path_of(store_path, c);
    if (!valid_file(path)) {
        // Built aside and renamed in: a host never maps a half-written file.
        std::string tmp = path + ".XXXXXX";
        const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
        if (fd < 0) return error_r = errno_text("cannot create " + tmp), false;
        Header h{};
        h.magic = kMagic;
        h.version = kVersion;
        h.slot_count = kMetricSlots;
        h.file_size = kFileSize;
        h.host_class = static_cast<uint8_t>(c);
        // Every block allocated now, not a sparse ftruncate: a host's first add
        // to a hole on a full filesystem would raise SIGBUS, and inside Exim's
        // local_scan() Exim's own crash handler, not our guard, gets it.
        const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(kFileSize)) == 0 &&
                        ::pwrite(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h) &&
                        ::fsync(fd) == 0 && ::rename(tmp.c_str(), path.c_str()) == 0;
        if (!ok) error_r = errno_text("cannot create " + path);
        ::close(fd);
        if (!ok) {
            ::unlink(tmp.c_str());
            return false;
        }
    }
    // Also allocates the blocks, and repairs the owner and mode, of a file made before.
    if (const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
        const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(kFileSize));
        ::close(fd);
        if (rc != 0) return error_r = path + ": cannot allocate it: " + std::strerror(rc), false;
    }
    if (::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0 || ::chmod(path.c_str(), 0660) != 0)
        return error_r = errno_text(path + ": cannot set its group and mode"), false;
    return true;
}

std::unique_ptr<Writer> Writer::open(const std::string& path, std::string& error_r) noexcept {
    try {
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            error_r = errno_text(path);
            return nullptr;
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !valid_header(fd, st, error_r)) {
            if (error_r.empty()) error_r = errno_text(path);
            else error_r = path + ": " + error_r;
            ::close(fd);
            return nullptr;
        }
        void* base = ::mmap(nullptr, kFileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (base == MAP_FAILED) {
            error_r = errno_text("cannot map " + path);
            return nullptr;
        }
        install_bus_guard();
        return std::unique_ptr<Writer>(new Writer(base, kFileSize));
    } catch (...) {
        return nullptr;
    }
}

Writer::~Writer() { ::munmap(base_, size_); }

std::atomic<uint64_t>* Writer::slot_at(int slot) const noexcept {
    if (slot < 0 || slot >= kMetricSlots) return nullptr;
    return reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(base_) + sizeof(Header)) + slot;
}

// The header still says what it said when mapped: garbage written over the
// file in place shows here, and a truncation faults here, on a plain load,
// rather than inside an atomic (a sanitizer's runtime does the atomics of an
// instrumented build and does not hand a fault there to the guard).
bool Writer::intact() const noexcept {
    const auto* h = static_cast<const Header*>(base_);
    return h->magic == kMagic && h->version == kVersion && h->file_size == kFileSize;
}

bool Writer::add(int slot, uint64_t n) noexcept {
    std::atomic<uint64_t>* counter = slot_at(slot);
    bool whole = false;
    return counter && under_bus_guard([&] {
               whole = intact();
               if (whole) counter->fetch_add(n, std::memory_order_relaxed);
           }) && whole;
}

bool Writer::set(int slot, uint64_t value) noexcept {
    std::atomic<uint64_t>* gauge = slot_at(slot);
    bool whole = false;
    return gauge && under_bus_guard([&] {
               whole = intact();
               if (whole) gauge->store(value, std::memory_order_relaxed);
           }) && whole;
}

std::optional<Snapshot> read(const std::string& path, std::string& error_r) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        error_r = errno_text(path);
        return std::nullopt;
    }
    struct stat st {};
    Snapshot values{};
    bool ok = ::fstat(fd, &st) == 0 && valid_header(fd, st, error_r);
    // Aligned 8-byte words copied by the kernel: each value is one the writers made.
    if (ok && ::pread(fd, values.data(), sizeof values, sizeof(Header)) != static_cast<ssize_t>(sizeof values)) {
        error_r = errno_text("cannot read the counters");
        ok = false;
    }
    ::close(fd);
    if (!ok) {
        error_r = path + ": " + (error_r.empty() ? std::strerror(errno) : error_r);
        return std::nullopt;
    }
    return values;
}

}  // namespace mailsuspend::metrics
