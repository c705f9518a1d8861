// The writer's table: placing a record (apply), room for it, growth and
// compaction (rebuild), checkpoints, the consistency check, and the notify
// file live Dovecot sessions watch.  writer.cpp (lock, open, recovery,
// commit) builds on these; nothing here calls back into it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "bus_guard.hpp"
#include "codec.hpp"
#include "journal.hpp"
#include "writer_impl.hpp"

namespace mailsuspend {

using namespace layout;
using namespace store_file;

bool StoreWriter::Impl::apply(const std::string& blob, const TargetRecord& r, std::string& error_r) {
    Header& h = *map.header;
    uint64_t index = 0, insert_at = UINT64_MAX;
    SlotCopy c;
    const Probe found = find(r.key, index, c, &insert_at);
    if (found == Probe::busy) {
        error_r = "a slot stayed locked during repair";
        return false;
    }
    const uint64_t fp = hash_key(r.key.data(), r.key.size());
    settle_chain(fp, found == Probe::found ? index : insert_at);
    if (r.empty()) {  // erase: leave a tombstone so probe chains stay intact
        if (found == Probe::found) {
            SlotCopy t{make_w0(0, kTombstone, 0, 0, 0), fp, 0, 0};
            write_slot(map.slots[index], t);
            map.tags[index].store(kTagFree, std::memory_order_release);  // after: no key loses its tag early
        }
        return true;
    }
    const uint64_t off = blob_placement(h.arena_offset, h.arena_used.load(), blob.size());
    if (off + blob.size() > map.arena_size) {
        error_r = "internal: arena full after ensure_room";
        return false;
    }
    std::memcpy(map.arena + off, blob.data(), blob.size());
    h.arena_used.store(off + blob.size());
    if (found != Probe::found) {
        if (insert_at == UINT64_MAX) {
            error_r = "internal: table full after ensure_room";
            return false;
        }
        index = insert_at;
        if (w0_state(map.slots[index].word0.load()) == kEmpty) h.used_slots.fetch_add(1);
    }
    announce_key(index, r.is_domain(), fp);
    SlotCopy n{make_w0(0, kUsed, static_cast<uint8_t>(r.key.size()), static_cast<uint8_t>(r.mode),
                       suspended_mask(r)),
               fp, (off << 32) | blob.size(), min_expiry(r)};
    write_slot(map.slots[index], n);
    return true;
}

// Before a record goes into slot index: its domain filter bit and its tag,
// so no reader can find the slot without finding the way to it (store_layout.hpp).
void StoreWriter::Impl::announce_key(uint64_t index, bool domain, uint64_t fp) {
    if (domain)
        map.header->domain_filter[filter_word(fp)].fetch_or(filter_bit(fp), std::memory_order_release);
    map.tags[index].store(tag_of(fp), std::memory_order_release);
}

// The tags on the way from fp's home slot to slot end (excluded) are set
// from their slots where damaged, so the record written at end is on a
// chain readers can follow whatever happened to the tags before.
void StoreWriter::Impl::settle_chain(uint64_t fp, uint64_t end) {
    if (end >= map.slot_count) return;
    for (uint64_t i = slot_index(fp, map.slot_count); i != end; i = i + 1 == map.slot_count ? 0 : i + 1)
        settle_derived(i);
}

// Whether slot i's derived data (tag, and domain filter bit for a domain
// key) agrees with the slot; when it does not, sets it from the slot.
bool StoreWriter::Impl::settle_derived(uint64_t i) {
    SlotCopy c;
    if (!read_slot(map.slots[i], c)) return true;  // left mid-write: recover() settles it
    const uint8_t tag = map.tags[i].load(std::memory_order_relaxed);
    const uint8_t state = w0_state(c.w0);
    if (state == kEmpty) return true;
    if (state != kUsed) {  // a tombstone (or damage) the writers' chains go past: so must the readers'
        if (tag != kTagEmpty) return true;
        map.tags[i].store(kTagFree, std::memory_order_release);
        return false;
    }
    const uint64_t key_at = uint64_t{c.blob_offset()} + kBlobKeyOffset;
    const bool domain = key_at < map.arena_size && map.arena[key_at] == '@';
    const std::size_t word = filter_word(c.fingerprint);
    const bool filtered =
        !domain || (map.header->domain_filter[word].load(std::memory_order_relaxed) & filter_bit(c.fingerprint));
    if (tag == tag_of(c.fingerprint) && filtered) return true;
    announce_key(i, domain, c.fingerprint);
    return false;
}

bool StoreWriter::Impl::ensure_room(uint64_t blob_bytes, uint64_t new_keys, std::string& error_r) {
    const Header& h = *map.header;
    const bool arena_full = h.arena_used.load() + blob_bytes > map.arena_size;
    const bool table_full = static_cast<double>(h.used_slots.load() + new_keys) >
                            kMaxLoad * static_cast<double>(map.slot_count);
    if (!arena_full && !table_full) return true;
    uint64_t live = 0;
    for (uint64_t i = 0; i < map.slot_count; ++i)
        if (w0_state(map.slots[i].word0.load()) == kUsed) ++live;
    const uint64_t capacity = std::max(h.capacity, (live + new_keys) * 2);
    return rebuild(capacity, (h.arena_used.load() + blob_bytes) * 2, error_r);
}

// Copies every live record into a new generation and publishes it by rename.
// Salvage only: the new generation already holds key at a later change.

bool StoreWriter::Impl::open_notify_file(bool init, std::string& error_r) {
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
        error_r = errno_text("cannot open " + notify_path);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        error_r = notify_path + " is not a regular file";
        return false;
    }
    if ((created || init) && !set_owner(fd.get(), cfg->write_group, 0664, error_r)) {
        error_r = notify_path + ": " + error_r;
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

bool StoreWriter::Impl::newer_copy_exists(const TargetRecord& r) {
    uint64_t index = 0;
    SlotCopy c;
    TargetRecord there;
    std::string why;
    return find(r.key, index, c, nullptr) == Probe::found && decode_slot(map, c, there, why) &&
           there.seq >= r.seq;
}

// The arena bytes m's live records take when a rebuild writes them again,
// in slot order, in this build's form and placed (blob_placement) in an
// arena starting arena_offset bytes into its file: a rebuild re-encodes
// every record, so a conversion or a growth compacts the older blobs.  A
// record that does not decode is not written (the salvage after a reboot
// skips it, any other rebuild stops at it), so it takes nothing: its length
// may be the garbage of a page that never reached the disk.  Each record is
// decoded twice per rebuild (here and when written): keeping the new blobs
// instead would hold a second arena in memory, and rebuilds are rare.
namespace {
uint64_t rewritten_arena_bytes(const Mapping& m, uint64_t arena_offset) {
    uint64_t used = 8;  // offset 0 means "no blob"
    std::string blob;
    for (uint64_t i = 0; i < m.slot_count; ++i) {
        const SlotCopy c{m.slots[i].word0.load(), m.slots[i].fingerprint.load(), m.slots[i].blob.load(), 0};
        if (w0_state(c.w0) != kUsed) continue;
        TargetRecord r;
        std::string why;
        if (!decode_slot(m, c, r, why)) continue;
        blob.clear();
        encode_record(r, blob);
        used = blob_placement(arena_offset, used, blob.size()) + blob.size();
    }
    return used;
}
}  // namespace

bool StoreWriter::Impl::rebuild(uint64_t capacity, uint64_t min_arena, std::string& error_r,
                                bool salvage) {
    const Header& old = *map.header;
    const std::string tmp = path + ".new";
    // The records as written again, and room for a few more changes; the
    // arena's size moves nothing before it.
    const uint64_t arena_offset = geometry_for(capacity, 0).arena_offset();
    const uint64_t arena_needed = std::max(min_arena, rewritten_arena_bytes(map, arena_offset) + 4096);
    const Geometry g = geometry_for(capacity, arena_needed);
    if (g.arena_size < arena_needed) {
        error_r = "the store cannot grow past 4 GiB of records";
        return false;
    }
    const uint64_t seq = salvage ? old.checkpoint_seq.load() : old.seq.load();
    if (!create_store_file(tmp, capacity, g, old.generation + 1, seq, *cfg, error_r)) return false;
    Mapping fresh;
    if (!map_file(tmp, true, fresh, error_r)) return false;
    Mapping previous = std::move(map);
    map = std::move(fresh);
    std::string blob;
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
        } else if (!decode_slot(previous, c, r, error_r)) {
            error_r = "slot " + std::to_string(i) + ": " + error_r + " (record dropped from rebuild)";
            map = std::move(previous);
            return false;
        }
        blob.clear();
        encode_record(r, blob);
        if (!apply(blob, r, error_r)) {
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
        error_r = errno_text("cannot publish the new generation");
        ::unlink(retiring.c_str());
        map = std::move(previous);
        return false;
    }
    fsync_dir(dir);
    previous.header->retired.store(1, std::memory_order_release);  // readers remap
    ::unlink(retiring.c_str());
    return checkpoint(error_r);
}

// Everything applied is forced to disk, so the journal can start afresh.
bool StoreWriter::Impl::checkpoint(std::string& error_r) {
    Header& h = *map.header;
    if (::msync(map.region.get_address(), map.region.get_size(), MS_SYNC) != 0) {
        error_r = errno_text("cannot flush the store");
        return false;
    }
    h.checkpoint_seq.store(h.seq.load());
    std::snprintf(h.boot_id, sizeof h.boot_id, "%s", current_boot_id().c_str());
    if (::msync(map.region.get_address(), kHeaderSize, MS_SYNC) != 0) {
        error_r = errno_text("cannot checkpoint the store");
        return false;
    }
    // A growth in the middle of a repair: the rest of the journal is not applied yet.
    if (h.seq.load() < journal_last_seq) return true;
    if (::ftruncate(journal_fd.get(), 0) != 0 || ::fdatasync(journal_fd.get()) != 0) {
        error_r = errno_text("cannot checkpoint the journal");
        return false;
    }
    journal_bytes = 0;
    return true;
}

bool StoreWriter::rebuild(uint64_t capacity, std::string& error_r) {
    const Header& h = *impl_->map.header;
    uint64_t live = 0;
    for (uint64_t i = 0; i < impl_->map.slot_count; ++i)
        if (w0_state(impl_->map.slots[i].word0.load()) == kUsed) ++live;
    if (capacity == 0) capacity = h.capacity;
    if (capacity < live) {
        error_r = "capacity " + std::to_string(capacity) + " is below the " + std::to_string(live) +
                  " records stored";
        return false;
    }
    try {
        if (!impl_->rebuild(capacity, 0, error_r)) return false;
        impl_->notify_readers();  // readers remap by themselves; this wakes waiting ones
        return true;
    } catch (const std::exception& e) {
        error_r = std::string("rebuild failed: ") + e.what();
        return false;
    }
}

bool StoreWriter::drop_lifted_text(std::string& error_r) {
    if (impl_->map.header->lifted_text_seq.load() == 0) return true;
    try {
        // The records' meaning is unchanged: readers remap at their next
        // lookup, and live sessions need no wake-up.
        return impl_->rebuild(impl_->map.header->capacity, 0, error_r);
    } catch (const std::exception& e) {
        error_r = std::string("rebuild failed: ") + e.what();
        return false;
    }
}

uint64_t StoreWriter::repair_derived() noexcept {
    uint64_t fixed = 0;
    for (uint64_t i = 0; i < impl_->map.slot_count; ++i)
        if (!impl_->settle_derived(i)) ++fixed;
    return fixed;
}

bool StoreWriter::check(std::vector<std::string>& report) {
    const Mapping& m = impl_->map;
    if (std::string why; !validate_header(*m.header, m.region.get_size(), why)) report.push_back("header: " + why);
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
        if (state == kTombstone) {
            if (m.tags[i].load() == kTagEmpty)
                report.push_back("slot " + std::to_string(i) + ": an erased slot's tag ends probe chains early");
            continue;
        }
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
        else if (lookup_probe(m, r.key, c.fingerprint, index, found) != Probe::found || index != i)
            report.push_back("slot " + std::to_string(i) + ": readers cannot find record " + r.key +
                             " (its tag or the domain filter is damaged)");
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

std::string notify_file_path(const std::string& dir) { return dir + "/" MS_NOTIFY_FILE; }

bool notify_file_usable(const std::string& dir, std::string& error_r) {
    const std::string path = notify_file_path(dir);
    struct stat st {};
    const char* why = nullptr;
    if (::lstat(path.c_str(), &st) != 0)
        why = errno == ENOENT ? "missing" : "cannot be examined";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((st.st_mode & S_IROTH) == 0)
        why = "not readable by the read group (mode should be 0664)";
    if (!why) return true;
    error_r = path + ": " + why + ": live Dovecot sessions re-check every 3 s instead of "
                                  "waiting for changes (`mailsuspend init` creates it)";
    return false;
}
}  // namespace mailsuspend
