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

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <utility>

#include "codec.hpp"
#include "bus_guard.hpp"
#include "config.hpp"
#include "journal.hpp"
#include "lock.hpp"
#include "mapping.hpp"
#include "store_layout.hpp"
#include "writer_impl.hpp"

namespace bi = boost::interprocess;

namespace mailsuspend {

using namespace layout;
using namespace store_file;

// ---------------------------------------------------------------- writer

bool StoreWriter::Impl::take_lock(bool init, std::string& error_r) {
    if (init) {
        if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
            error_r = errno_text("cannot create " + dir);
            return false;
        }
        Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!d.ok() || !set_owner(d.get(), cfg->read_group, 0750, error_r)) {
            if (error_r.empty()) error_r = errno_text("cannot open " + dir);
            return false;
        }
    }
    const std::string lock_path = dir + "/lock";
    // 0660 root:write_group: a reader (a mail user in read_group) must not be able
    // to open it, or it could hold the lock and stall every writer, Exim's too.
    lock_fd = Fd(::open(lock_path.c_str(), O_RDWR | (init ? O_CREAT : 0) | O_CLOEXEC, 0660));
    if (!lock_fd.ok()) {
        error_r = errno == ENOENT ? "no store at " + dir + " (run: mailsuspend init)"
                                : errno_text("cannot open " + lock_path);
        return false;
    }
    if (init && !set_owner(lock_fd.get(), cfg->write_group, 0660, error_r)) return false;
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
            error_r = errno_text("cannot lock " + lock_path);
            return false;
        }
        const int64_t waited = monotonic_ms() - start;
        if (waited >= timeout_ms) {
            if (wait) wait->busy = true;
            error_r = "the store's writer lock " + lock_path + " is held by " + lock_holder(lock_fd.get()) +
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

bool StoreWriter::Impl::open_store(bool init, std::string& error_r) {
    if (::access(path.c_str(), F_OK) != 0) {
        if (!init) {
            error_r = "no store at " + path + " (run: mailsuspend init)";
            return false;
        }
        const std::string tmp = path + ".new";
        const Geometry g = geometry_for(cfg->store_capacity, 0);
        if (!create_store_file(tmp, cfg->store_capacity, g, 1, 0, *cfg, error_r)) return false;
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            error_r = errno_text("cannot publish " + path);
            return false;
        }
        fsync_dir(dir);
    }
    if (!map_file(path, true, map, error_r, convert_older)) return false;
    {
        // A store made by an older build may be sparse: allocate it before
        // this writer stores into the mapping (cheap when already allocated).
        Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd.ok()) {
            error_r = errno_text("cannot open " + path);
            return false;
        }
        if (!allocate(fd.get(), map.region.get_size(), path, error_r)) return false;
    }
    retire_leftover();
    // 0660: readers need only the store; the journal keeps lifted reasons and actors.
    journal_fd = Fd(::open(journal_path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0660));
    if (!journal_fd.ok()) {
        error_r = errno_text("cannot open " + journal_path);
        return false;
    }
    if (init && !set_owner(journal_fd.get(), cfg->write_group, 0660, error_r)) return false;
    return !init || open_notify_file(true, error_r);
}

// Opens <dir>/changed for writing, creating it (0664, write_group) when it
// is missing; init also repairs the owner and mode of an existing one.
// O_NONBLOCK | O_NOFOLLOW and the regular-file check: whatever sits at
// that name, a writer (Exim among them) never blocks on it.
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
        if (map.tags) announce_key(static_cast<uint64_t>(&s - map.slots), r.is_domain(), c.fingerprint);
        settled = make_w0(w0_seq(w0) + 1, kUsed, static_cast<uint8_t>(r.key.size()),
                          static_cast<uint8_t>(r.mode), suspended_mask(r));
    }
    s.word0.store(settled, std::memory_order_release);
    return settled;
}

// Repairs what a dead writer or a reboot left: slots caught mid-write are
// settled (settle_slot), then every committed journal entry not yet applied is
// applied again (entries are whole record images, so applying twice is harmless).
bool StoreWriter::Impl::recover(std::string& error_r) {
    Header& h = *map.header;
    const bool rebooted = std::strncmp(h.boot_id, current_boot_id().c_str(), sizeof h.boot_id) != 0;
    // An older layout's file (mapped only by `mailsuspend rebuild`) is converted
    // the way a reboot is salvaged: its whole records into a new generation
    // of this layout, then the journal from its last checkpoint.
    const bool converting = map.tags == nullptr;
    const bool salvage = rebooted || converting;
    // A dead writer's change (repaired or replayed here) was never announced.
    bool announce = h.dirty.load() || salvage;
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
    if (!read_journal(journal_fd.get(), entries, error_r)) return false;
    if (!entries.empty()) journal_last_seq = entries.back().seq;
    const uint64_t from = salvage ? h.checkpoint_seq.load() : h.seq.load();
    // After a reboot the file holds, page by page, the last checkpoint or
    // anything newer the kernel wrote back: slots may point at blobs that
    // never reached the disk, or a key sit in two slots.  Copy what is whole
    // into a new generation; the replay below brings back the rest.
    if (salvage && !rebuild(h.capacity, map.arena_size, error_r, true)) return false;
    map.header->dirty.store(1);
    for (const auto& e : entries) {
        if (e.seq <= from) continue;
        TargetRecord r;
        const auto* p = reinterpret_cast<const unsigned char*>(e.blob.data());
        if (!decode_record(p, e.blob.size(), r, error_r)) {
            error_r = "journal entry " + std::to_string(e.seq) + ": " + error_r;
            return false;
        }
        // Written in this build's form: the journal of an older layout
        // (a conversion) holds older blob forms.
        std::string blob;
        encode_record(r, blob);
        if (!ensure_room(blob_footprint(blob.size()), 1, error_r)) return false;
        // ensure_room may have published a new generation: h is gone.
        Header& cur = *map.header;
        cur.dirty.store(1);
        if (!apply(blob, r, error_r)) return false;
        if (e.seq > cur.seq.load()) cur.seq.store(e.seq);
        announce = true;
    }
    map.header->dirty.store(0);
    if (announce && !converting) {  // a dead writer may have died between a tag and its slot
        for (uint64_t i = 0; i < map.slot_count; ++i) settle_derived(i);
    }
    if (announce) notify_readers();
    struct stat st {};
    journal_bytes = ::fstat(journal_fd.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return salvage ? checkpoint(error_r) : true;
}

// Writes one record image into the table (the caller has journaled it).
bool StoreWriter::Impl::journal_append(const std::vector<std::string>& blobs,
                                       const std::vector<uint64_t>& seqs, std::string& error_r) {
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
            error_r = errno_text("cannot write the journal");
            // Nothing half-written may be mistaken for a commit later.
            if (::ftruncate(journal_fd.get(), static_cast<off_t>(journal_bytes)) != 0) {}
            return false;
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    if (::fdatasync(journal_fd.get()) != 0) {
        error_r = errno_text("cannot sync the journal");
        if (::ftruncate(journal_fd.get(), static_cast<off_t>(journal_bytes)) != 0) {}
        return false;
    }
    journal_bytes += buf.size();
    journal_last_seq = seqs.back();
    return true;
}

StoreWriter::StoreWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreWriter::~StoreWriter() = default;

std::unique_ptr<StoreWriter> StoreWriter::open(const Config& cfg, bool init, std::string& error_r, LockWait* wait,
                                              bool convert_older) {
    try {
        auto impl = std::make_unique<Impl>();
        impl->wait = wait;
        impl->convert_older = convert_older;
        impl->cfg_copy = cfg;
        impl->cfg = &impl->cfg_copy;
        impl->dir = cfg.store_path;
        impl->path = impl->dir + "/" MS_STORE_FILE;
        impl->journal_path = impl->dir + "/journal";
        if (!impl->take_lock(init, error_r) || !impl->open_store(init, error_r) || !impl->recover(error_r))
            return nullptr;
        return std::unique_ptr<StoreWriter>(new StoreWriter(std::move(impl)));
    } catch (const std::exception& e) {
        error_r = std::string("cannot open the store: ") + e.what();
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
// The change leaves a reason of before that after no longer holds (lifted,
// expired and swept, or replaced) in the superseded blob.
bool drops_text(const TargetRecord& before, const TargetRecord& after) {
    for (int i = 0; i < kServiceCount; ++i)
        if (!before.services[i].reason.empty() && before.services[i].reason != after.services[i].reason)
            return true;
    return false;
}

bool ends_sessions(const TargetRecord& before, const TargetRecord& after, int64_t now) {
    return (after.in_force_mask(now) & ~before.in_force_mask(now) & kSessionServices) != 0;
}

}  // namespace

uint64_t StoreWriter::commit(std::vector<Change>& changes, std::string& error_r,
                             const BeforeJournal& before_journal, const std::function<void()>& undo) {
    if (changes.empty()) return impl_->map.header->seq.load();
    // Slots and blobs hold the key length in one byte: refuse, never truncate.
    for (const auto& c : changes) {
        if (c.record.key.empty() || c.record.key.size() > 255) {
            error_r = "cannot store the key '" + c.record.key.substr(0, 40) +
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
            error_r = "the store's change counter is exhausted (" + std::to_string(seq) +
                      "; a damaged header?)";
            return 0;
        }
        bool wake = false, lifts_text = false;
        const int64_t now = std::time(nullptr);
        for (const auto& c : changes) {
            TargetRecord before;
            // unreadable: wake and rewrite, to be safe
            const bool known = get(c.record.key, before);
            wake = wake || !known || ends_sessions(before, c.record, now);
            lifts_text = lifts_text || !known || drops_text(before, c.record);
        }
        for (std::size_t i = 0; i < changes.size(); ++i) {
            changes[i].record.seq = seqs[i] = ++seq;
            encode_record(changes[i].record, blobs[i]);
            blob_bytes += blob_footprint(blobs[i].size());
        }
        if (!impl_->ensure_room(blob_bytes, changes.size(), error_r)) return 0;
        if (before_journal && !before_journal(seq, error_r)) return 0;
        if (!impl_->journal_append(blobs, seqs, error_r)) {
            if (undo) undo();
            return 0;
        }
        h = impl_->map.header;  // ensure_room may have published a new generation
        h->dirty.store(1);
        for (std::size_t i = 0; i < changes.size(); ++i)
            if (!impl_->apply(blobs[i], changes[i].record, error_r)) return 0;
        h->seq.store(seq, std::memory_order_release);
        if (lifts_text) h->lifted_text_seq.store(seq);
        h->dirty.store(0);
        if (wake) impl_->notify_readers();
        else impl_->notify_warning.clear();
        if (impl_->journal_bytes > kCheckpointJournalBytes && !impl_->checkpoint(error_r)) return 0;
        return seq;
    } catch (const std::exception& e) {
        error_r = std::string("commit failed: ") + e.what();
        return 0;
    }
}

bool StoreWriter::for_each(const std::function<void(const TargetRecord&)>& fn) {
    std::string error;  // the writer's for_each reports no reason
    return for_each_record(impl_->map, fn, error);
}

}  // namespace mailsuspend
