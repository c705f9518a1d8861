// The writer's state, shared by writer.cpp (open, recover, commit) and
// writer_table.cpp (apply, rebuild, checkpoint, check, the notify file).  Private
// to the store layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "lock.hpp"
#include "mapping.hpp"
#include "store.hpp"
#include "store_layout.hpp"

namespace mailsuspend {

struct StoreWriter::Impl {
    using Fd = store_file::Fd;
    using Mapping = store_file::Mapping;
    using Slot = layout::Slot;
    using Probe = store_file::Probe;
    using SlotCopy = store_file::SlotCopy;

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
    bool convert_older = false;  // map an older layout's file, to convert it (recover)
    bool take_lock(bool init, std::string& error_r);
    bool open_notify_file(bool init, std::string& error_r);
    void notify_readers();
    bool open_store(bool init, std::string& error_r);
    bool recover(std::string& error_r);
    uint64_t settle_slot(Slot& s, uint64_t w0);
    void retire_leftover();
    bool apply(const std::string& blob, const TargetRecord& r, std::string& error_r);
    void announce_key(uint64_t index, bool domain, uint64_t fp);
    bool settle_derived(uint64_t i);
    void settle_chain(uint64_t fp, uint64_t end);
    bool ensure_room(uint64_t blob_bytes, uint64_t new_keys, std::string& error_r);
    // min_arena: at least this arena (it also holds every record as written
    // again, and 4 KiB more).  salvage: after a reboot, skip records that
    // are not whole, keep the newest of duplicates, and start from the last
    // checkpoint's seq.
    bool rebuild(uint64_t capacity, uint64_t min_arena, std::string& error_r, bool salvage = false);
    bool newer_copy_exists(const TargetRecord& r);
    bool checkpoint(std::string& error_r);
    bool journal_append(const std::vector<std::string>& blobs, const std::vector<uint64_t>& seqs,
                        std::string& error_r);
    Probe find(std::string_view key, uint64_t& index, SlotCopy& c, uint64_t* insert_at) const {
        return store_file::probe(map, key, layout::hash_key(key.data(), key.size()), index, c, insert_at);
    }
};

}  // namespace mailsuspend
