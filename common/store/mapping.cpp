// The store file's cold helpers: check and map a generation, create one.
#include "mapping.hpp"

#include <grp.h>
#include <sys/stat.h>

#include <boost/interprocess/file_mapping.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>

#include "config.hpp"

namespace mailsuspend::store_file {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string current_boot_id() {
    char buf[64];
    ms_boot_id(buf, sizeof buf);
    return buf;
}

namespace {

// Where the tags end: the arena starts there (rounded to a cache line).
uint64_t tags_size(uint64_t slot_count) { return ms_tags_size(slot_count); }

}  // namespace

bool validate_header(const Header& h, uint64_t file_size, std::string& error_r, bool convertible) {
    const ms_header_problem problem = ms_header_check(&h, file_size, convertible);
    switch (problem) {
        case MS_HEADER_OK: return true;
        // The package's postinst matches "older layout" and runs `mailsuspend rebuild`,
        // which is where a build that changes the layout learns to read the old one.
        case MS_HEADER_OLDER_LAYOUT:
            error_r = "older layout version " + std::to_string(h.layout_version) + " (this build reads " +
                      std::to_string(kLayoutVersion) + "; `mailsuspend rebuild` converts the layouts it knows)";
            break;
        case MS_HEADER_NEWER_LAYOUT:
            error_r = "unknown layout version " + std::to_string(h.layout_version) + " (this build reads " +
                      std::to_string(kLayoutVersion) + "; written by a newer mailsuspend?)";
            break;
        case MS_HEADER_FILE_SIZE:
            error_r = "file is " + std::to_string(file_size) + " bytes, header says " + std::to_string(h.file_size) +
                      " (truncated or overwritten?)";
            break;
        default: error_r = ms_header_problem_text(problem); break;
    }
    return false;
}

bool map_file(const std::string& path, bool writable, Mapping& m, std::string& error_r, bool convertible) {
    try {
        const auto mode = writable ? bi::read_write : bi::read_only;
        bi::file_mapping file(path.c_str(), mode);
        struct stat st {};
        if (::fstat(file.get_mapping_handle().handle, &st) != 0) {
            error_r = errno_text("cannot stat " + path);
            return false;
        }
        if (static_cast<uint64_t>(st.st_size) < kHeaderSize) {
            error_r = path + ": file is shorter than its header (truncated?)";
            return false;
        }
        bi::mapped_region region(file, mode);
        auto* header = static_cast<Header*>(region.get_address());
        std::string why;
        if (!validate_header(*header, region.get_size(), why, convertible)) {
            error_r = path + ": " + why;
            return false;
        }
        m.region = std::move(region);
        m.header = static_cast<Header*>(m.region.get_address());
        auto* base = static_cast<unsigned char*>(m.region.get_address());
        m.slots = reinterpret_cast<Slot*>(base + m.header->slots_offset);
        m.tags = m.header->layout_version == kLayoutVersion
                     ? reinterpret_cast<std::atomic<uint8_t>*>(base + m.header->tags_offset)
                     : nullptr;
        m.arena = base + m.header->arena_offset;
        ms_map_of(base, &m.view);
        m.slot_count = m.header->slot_count;
        m.arena_size = m.header->arena_size;
        m.dev = st.st_dev;
        m.ino = st.st_ino;
        return true;
    } catch (const bi::interprocess_exception& e) {
        error_r = path + ": " + e.what();
        return false;
    }
}

uint64_t Geometry::arena_offset() const { return kHeaderSize + slot_count * sizeof(Slot) + tags_size(slot_count); }

Geometry geometry_for(uint64_t capacity, uint64_t min_arena) {
    Geometry g{};
    g.slot_count = std::max<uint64_t>(16, static_cast<uint64_t>(std::ceil(capacity / kMaxLoad)));
    g.arena_size = std::min(kMaxArena, round_up(std::max({capacity * kArenaBytesPerTarget,
                                                           min_arena, uint64_t{65536}}), 4096));
    g.file_size = round_up(kHeaderSize + g.slot_count * sizeof(Slot) + tags_size(g.slot_count) + g.arena_size, 4096);
    return g;
}

bool set_owner(int fd, const std::string& group, mode_t mode, std::string& error_r) {
    if (!group.empty()) {
        struct group* gr = ::getgrnam(group.c_str());
        if (!gr) {
            error_r = "group '" + group + "' does not exist (create it with addgroup --system " +
                      group + ", or set it to \"\" in mailsuspend.conf)";
            return false;
        }
        if (::fchown(fd, static_cast<uid_t>(-1), gr->gr_gid) != 0) {
            error_r = errno_text("cannot give a file to group " + group);
            return false;
        }
    }
    if (::fchmod(fd, mode) != 0) {
        error_r = errno_text("cannot set file mode");
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

bool allocate(int fd, uint64_t size, const std::string& path, std::string& error_r) {
    int rc;
    do rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    while (rc == EINTR);
    if (rc == 0) return true;
    error_r = "cannot allocate " + std::to_string(size) + " bytes for " + path + ": " + std::strerror(rc) +
              (rc == ENOSPC ? " (the store's filesystem is full: nothing changed)" : "");
    return false;
}

bool create_store_file(const std::string& path, uint64_t capacity, const Geometry& g,
                       uint64_t generation, uint64_t seq, const Config& cfg, std::string& error_r) {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.ok()) {
        error_r = errno_text("cannot create " + path);
        return false;
    }
    // Every page allocated now, not a sparse file (ftruncate alone): a write
    // through the mapping into a hole on a full filesystem raises SIGBUS.
    if (!allocate(fd.get(), g.file_size, path, error_r)) {
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
    h.tags_offset = kHeaderSize + g.slot_count * sizeof(Slot);
    h.arena_offset = g.arena_offset();
    h.arena_size = g.arena_size;
    h.file_size = g.file_size;
    h.arena_used.store(8);  // offset 0 means "no blob"
    h.seq.store(seq);
    h.checkpoint_seq.store(seq);
    std::snprintf(h.boot_id, sizeof h.boot_id, "%s", current_boot_id().c_str());
    if (const ssize_t n = ::pwrite(fd.get(), &h, sizeof h, 0); n != static_cast<ssize_t>(sizeof h)) {
        if (n >= 0) errno = ENOSPC;  // a short write sets no errno
        error_r = errno_text("cannot write " + path);
        return false;
    }
    return set_owner(fd.get(), cfg.write_group, 0664, error_r);
}

bool for_each_record_from(const Mapping& m, uint64_t from_offset,
                          const std::function<void(const TargetRecord&, uint64_t start, uint64_t end)>& fn,
                          std::string& error_r) {
    TargetRecord r;
    for (uint64_t i = 0; i < m.slot_count; ++i) {
        SlotCopy c;
        if (!read_slot(m.slots[i], c)) return false;
        if (w0_state(c.w0) != kUsed || c.blob_offset() < from_offset) continue;
        std::string why;
        if (!decode_slot(m, c, r, why)) {
            error_r = "corrupt record in slot " + std::to_string(i) + ": " + why;
            return false;
        }
        fn(r, c.blob_offset(), uint64_t{c.blob_offset()} + c.blob_length());
    }
    return true;
}

bool for_each_record(const Mapping& m, const std::function<void(const TargetRecord&)>& fn, std::string& error_r) {
    return for_each_record_from(m, 0, [&](const TargetRecord& r, uint64_t, uint64_t) { fn(r); }, error_r);
}

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
    s.lifted_text_seq = m.header->lifted_text_seq.load();
    return s;
}

}  // namespace mailsuspend::store_file
