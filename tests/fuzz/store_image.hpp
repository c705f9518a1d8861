// The fuzz input format of fuzz_store and the seed tool (white-box:
// store_layout.hpp and the journal format in journal.hpp).
//
//   byte 0      flags (Fix*)
//   bytes 1..4  n: length of the store part (little endian; cut to what is there)
//   n bytes     store part: the Header's bytes, then everything after the
//               4 KiB header page (slots and arena)
//   the rest    the journal file
//
// The header page beyond sizeof(Header) is never read, so it is not part of
// the input (zeros); FixTruncated writes the store part as it is instead.
// The Fix* flags let mutations get past checks a random byte cannot (a CRC,
// the boot id, the file size) so the fuzzer reaches the decoders and the
// repair code behind them; each is chosen by the input, so both sides of
// every check stay reachable.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include "store_layout.hpp"

namespace fuzz {

namespace layout = mailsuspend::layout;

enum : uint8_t {
    FixFileSize = 1,     // header.file_size = the real size
    FixBootId = 2,       // header.boot_id = this boot (else: "after a reboot" recovery)
    FixBlobCrc = 4,      // recompute the CRC of every blob a used slot points at
    FixJournalCrc = 8,   // recompute every journal commit CRC
    CommitChange = 16,   // the writer also commits a change, read back after
    FixTruncated = 32,   // store file = the store part as it is (no header page)
};

// Journal records (common/store/journal.hpp, internal to the store).
struct JournalEntryHeader {
    uint32_t magic;
    uint32_t length;
    uint64_t seq;
};
struct JournalCommit {
    uint32_t magic;
    uint32_t crc;
    uint64_t last_seq;
};

struct Image {
    uint8_t flags = 0;
    std::string store, journal;
};

inline std::string current_boot_id() {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(in, id);
    return id;
}

template <typename T>
T load(const std::string& s, std::size_t at) {
    T v{};
    std::memcpy(&v, s.data() + at, sizeof v);
    return v;
}
template <typename T>
void store_at(std::string& s, std::size_t at, T v) {
    std::memcpy(s.data() + at, &v, sizeof v);
}

inline void fix_blob_crcs(std::string& file) {
    using layout::Header;
    const auto slot_count = load<uint64_t>(file, offsetof(Header, slot_count));
    const auto arena_offset = load<uint64_t>(file, offsetof(Header, arena_offset));
    const uint64_t slots_end = layout::kHeaderSize + slot_count * sizeof(layout::Slot);
    if (slot_count > file.size() / sizeof(layout::Slot) || slots_end > file.size() ||
        arena_offset > file.size())
        return;
    for (uint64_t i = 0; i < slot_count; ++i) {
        const std::size_t at = layout::kHeaderSize + i * sizeof(layout::Slot);
        if (layout::w0_state(load<uint64_t>(file, at)) != layout::kUsed) continue;
        const auto blob = load<uint64_t>(file, at + 16);
        const uint64_t off = arena_offset + (blob >> 32), len = static_cast<uint32_t>(blob);
        if (len < sizeof(layout::BlobHeader) || off + len > file.size()) continue;
        const auto crc = layout::crc32(file.data() + off + sizeof(layout::BlobHeader),
                                       len - sizeof(layout::BlobHeader));
        store_at<uint32_t>(file, off + offsetof(layout::BlobHeader, crc), crc);
    }
}

inline void fix_journal_crcs(std::string& j) {
    std::size_t pos = 0, tx_start = 0;
    while (pos + sizeof(JournalEntryHeader) <= j.size()) {
        const auto magic = load<uint32_t>(j, pos);
        if (magic == layout::kJournalEntryMagic) {
            const auto h = load<JournalEntryHeader>(j, pos);
            if (h.length > j.size() - pos - sizeof h) return;
            pos += sizeof h + h.length;
        } else if (magic == layout::kJournalCommitMagic) {
            store_at<uint32_t>(j, pos + offsetof(JournalCommit, crc),
                               layout::crc32(j.data() + tx_start, pos - tx_start));
            pos += sizeof(JournalCommit);
            tx_start = pos;
        } else {
            return;
        }
    }
}

// Builds the files the input describes.
inline Image decode(const uint8_t* data, std::size_t size) {
    Image img;
    if (size < 5) return img;
    img.flags = data[0];
    uint32_t n = 0;
    std::memcpy(&n, data + 1, 4);
    const std::size_t part = std::min<std::size_t>(n, size - 5);
    const char* p = reinterpret_cast<const char*>(data + 5);
    img.journal.assign(p + part, size - 5 - part);
    if (img.flags & FixTruncated) {
        img.store.assign(p, part);
    } else {
        const std::size_t head = std::min(part, sizeof(layout::Header));
        img.store.assign(layout::kHeaderSize, '\0');
        std::memcpy(img.store.data(), p, head);
        img.store.append(p + head, part - head);
        if (img.flags & FixFileSize)
            store_at<uint64_t>(img.store, offsetof(layout::Header, file_size), img.store.size());
        if (img.flags & FixBootId) {
            char id[sizeof layout::Header::boot_id] = {};
            std::snprintf(id, sizeof id, "%s", current_boot_id().c_str());
            std::memcpy(img.store.data() + offsetof(layout::Header, boot_id), id, sizeof id);
        }
        if (img.flags & FixBlobCrc) fix_blob_crcs(img.store);
    }
    if (img.flags & FixJournalCrc) fix_journal_crcs(img.journal);
    return img;
}

// The inverse, for seeds: a store file and a journal as one input.
inline std::string encode(uint8_t flags, const std::string& store, const std::string& journal) {
    std::string out(1, static_cast<char>(flags));
    std::string part = store.size() >= layout::kHeaderSize
                           ? store.substr(0, sizeof(layout::Header)) + store.substr(layout::kHeaderSize)
                           : store;
    const uint32_t n = static_cast<uint32_t>(part.size());
    out.append(reinterpret_cast<const char*>(&n), 4);
    return out + part + journal;
}

}  // namespace fuzz
