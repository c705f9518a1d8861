// StoreReader: maps the current generation read-only and looks up without a
// lock, a system call or an allocation (store.hpp).
#include "store.hpp"

#include <sys/stat.h>

#include <boost/interprocess/file_mapping.hpp>

#include <cstring>

#include "bus_guard.hpp"
#include "mapping.hpp"

namespace mailsuspend {

using namespace layout;
using namespace store_file;

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
        if (ms_map_needs_repair(&fresh.view)) {
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
    // Follows a newer generation; false when it cannot be mapped.  The
    // header is re-checked on every lookup (ms_map_current).
    bool current() {
        bool fresh = false;
        if (map.valid() &&
            !under_bus_guard([&] { fresh = ms_map_current(&map.view); }))
            return lose_mapping();
        if (fresh) return true;
        return remap();
    }
};

namespace {

// What a probe found, as the hot view of its slot.
// (c is as the C probe left it: read only when it found the key.)
LookupStatus hot_view_of(ms_probe found, const ms_slot_copy& c, HotView& out, std::string& error_r) {
    switch (found) {
        case MS_PROBE_BUSY:
            error_r = "a store slot stayed locked (a writer died mid-write; the next "
                           "mailsuspend command repairs it)";
            return LookupStatus::unavailable;
        case MS_PROBE_ABSENT: return LookupStatus::absent;
        case MS_PROBE_FOUND: break;
    }
    out.suspended = w0_suspended(c.w0);
    out.mode = static_cast<DeliveryMode>(std::min<uint8_t>(w0_mode(c.w0), 4));
    out.min_expiry = static_cast<uint32_t>(c.expiry);
    out.blob = ms_blob_offset(&c);
    return LookupStatus::found;
}

}  // namespace

StoreReader::StoreReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreReader::~StoreReader() = default;

std::unique_ptr<StoreReader> StoreReader::open(const std::string& dir, std::string& error_r) {
    try {
        auto impl = std::make_unique<Impl>();
        impl->dir = dir;
        impl->path = dir + "/" MS_STORE_FILE;
        install_bus_guard();
        if (::access(impl->path.c_str(), F_OK) != 0 && errno == ENOENT) {
            error_r = "no store at " + impl->path + " (run: mailsuspend init)";
            return nullptr;
        }
        if (!impl->remap()) {
            error_r = impl->error;
            return nullptr;
        }
        return std::unique_ptr<StoreReader>(new StoreReader(std::move(impl)));
    } catch (const std::exception& e) {
        error_r = std::string("cannot open the store: ") + e.what();
        return nullptr;
    }
}

namespace {

// N keys under one guard and one look at the header (ms_probe_keys;
// current() does the same check under its own, then remaps when the mapping
// is stale).  A template, so the one-key lookup keeps no loop of the
// two-key one.
template <std::size_t N>
    requires(N == 1 || N == 2)  // ms_probe_keys reads one or two
void lookup_keys(StoreReader::Impl& impl, const std::string_view (&keys)[N], HotView* const (&outs)[N],
                 LookupStatus (&status_r)[N]) {
    const char* data[N];
    std::size_t lens[N];
    uint64_t fp[N], index[N];
    for (std::size_t k = 0; k < N; ++k) {
        data[k] = keys[k].data();
        lens[k] = keys[k].size();
        fp[k] = hash_key(data[k], lens[k]);
    }
    ms_slot_copy c[N];  // written by the probe where it finds a key
    ms_probe found[N];
    const Mapping& m = impl.map;
    const auto unavailable = [&] {
        for (auto& s : status_r) s = LookupStatus::unavailable;
    };
    if (!m.valid() && !impl.current()) return unavailable();
    ms_read read = ms_probe_keys(&m.view, N, data, lens, fp, found, index, c);
    // Stale: remap and probe again (a few times: a generation may be retired
    // again between the remap and the probe).
    for (int attempt = 1; attempt < 4 && read == MS_READ_STALE; ++attempt) {
        if (!impl.current()) return unavailable();
        read = ms_probe_keys(&m.view, N, data, lens, fp, found, index, c);
    }
    if (read == MS_READ_FAULT) {
        impl.lose_mapping();
        return unavailable();
    }
    if (read == MS_READ_STALE) {
        impl.error = impl.path + ": replaced again and again during one lookup";
        return unavailable();
    }
    for (std::size_t k = 0; k < N; ++k) status_r[k] = hot_view_of(found[k], c[k], *outs[k], impl.error);
}

}  // namespace

LookupStatus StoreReader::lookup(std::string_view key, HotView& out) noexcept {
    LookupStatus status[1];
    lookup_keys<1>(*impl_, {key}, {&out}, status);
    return status[0];
}

void StoreReader::lookup_pair(std::string_view first, std::string_view second, HotView& first_out,
                              HotView& second_out, LookupStatus& first_r, LookupStatus& second_r) noexcept {
    LookupStatus status[2];
    lookup_keys<2>(*impl_, {first, second}, {&first_out, &second_out}, status);
    first_r = status[0];
    second_r = status[1];
}

LookupStatus StoreReader::read(std::string_view key, TargetRecord& out, int only_service) noexcept {
    try {
        if (!impl_->current()) return LookupStatus::unavailable;
        const Mapping& m = impl_->map;
        uint64_t index = 0;
        SlotCopy c;
        Probe found = Probe::absent;
        if (!under_bus_guard([&] { found = lookup_probe(m, key, hash_key(key.data(), key.size()), index, c); }))
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
        // Copied out under the guard (a record of the usual size onto the
        // stack, a longer one into memory allocated outside the guard).
        unsigned char small[512];
        std::string large;
        unsigned char* blob = small;
        if (c.blob_length() > sizeof small) {
            large.resize(c.blob_length());
            blob = reinterpret_cast<unsigned char*>(large.data());
        }
        if (!under_bus_guard([&] { std::memcpy(blob, m.arena + c.blob_offset(), c.blob_length()); }))
            return impl_->lose_mapping(), LookupStatus::unavailable;
        std::string why;
        if (!decode_record(blob, c.blob_length(), out, why, only_service)) {
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
        return for_each_record(impl_->map, fn, impl_->error);
    } catch (const std::exception& e) {
        impl_->error = e.what();
        return false;
    }
}

bool StoreReader::for_each_from(uint64_t from_offset,
                                const std::function<void(const TargetRecord&, uint64_t start, uint64_t end)>& fn) noexcept {
    try {
        if (!impl_->current()) return false;
        return for_each_record_from(impl_->map, from_offset, fn, impl_->error);
    } catch (const std::exception& e) {
        impl_->error = e.what();
        return false;
    }
}

StoreStats StoreReader::stats() const noexcept { return stats_of(impl_->map); }
const std::string& StoreReader::last_error() const noexcept { return impl_->error; }

bool StoreReader::usable() noexcept { return impl_->current(); }

uint64_t StoreReader::change_stamp() noexcept {
    const Mapping& m = impl_->map;
    if (!m.valid()) return 0;
    uint64_t stamp = 0;
    if (!under_bus_guard([&] { stamp = ms_change_stamp(&m.view); })) {
        impl_->lose_mapping();
        return 0;
    }
    return stamp;
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

}  // namespace mailsuspend
