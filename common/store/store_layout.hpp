// The store file's layout for the C++ core: the names of the one
// definition in C (common/reader/ms_store.h, which describes the file), so
// the writers here and the readers there cannot disagree on a byte.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ms_read.h"
#include "ms_store.h"

namespace mailsuspend::layout {

constexpr uint64_t kStoreMagic = MS_STORE_MAGIC;
constexpr uint32_t kLayoutVersion = MS_LAYOUT_VERSION;
constexpr uint32_t kOldestConvertibleLayoutVersion = MS_OLDEST_CONVERTIBLE_LAYOUT_VERSION;
constexpr uint64_t kHeaderSize = MS_HEADER_SIZE;
constexpr uint16_t kBlobMagic = MS_BLOB_MAGIC;
constexpr uint32_t kJournalEntryMagic = 0x314A534D;     // "MSJ1"
constexpr uint32_t kJournalCommitMagic = 0x434A534D;    // "MSJC"
constexpr double kMaxLoad = 0.80;                       // slots in use / slot_count
constexpr std::size_t kDomainFilterWords = MS_DOMAIN_FILTER_WORDS;

using Header = ::ms_store_header;
using Slot = ::ms_slot;
using BlobHeader = ::ms_blob_header;
static_assert(sizeof(std::atomic<uint64_t>) == sizeof(uint64_t) && alignof(std::atomic<uint64_t>) == alignof(uint64_t),
              "the shared words are plain 64-bit words in C");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && sizeof(std::atomic<uint8_t>) == 1);
static_assert(sizeof(Header) <= kHeaderSize && sizeof(Slot) == 32 && sizeof(BlobHeader) == 12);

enum SlotState : uint8_t { kEmpty = MS_SLOT_EMPTY, kUsed = MS_SLOT_USED, kTombstone = MS_SLOT_TOMBSTONE };

inline uint32_t w0_seq(uint64_t w) { return ms_w0_seq(w); }
inline uint8_t w0_state(uint64_t w) { return ms_w0_state(w); }
inline uint8_t w0_key_len(uint64_t w) { return ms_w0_key_len(w); }
inline uint8_t w0_mode(uint64_t w) { return ms_w0_mode(w); }
inline uint8_t w0_suspended(uint64_t w) { return ms_w0_suspended(w); }
inline uint64_t make_w0(uint32_t seq, uint8_t state, uint8_t key_len, uint8_t mode, uint8_t suspended) {
    return ms_make_w0(seq, state, key_len, mode, suspended);
}

constexpr std::size_t kBlobKeyOffset = MS_BLOB_KEY_OFFSET;
constexpr uint64_t kCacheLine = MS_CACHE_LINE;

// Where a blob of len bytes goes in an arena used up to `used` (offsets from
// the arena, which starts arena_offset bytes into the page-aligned file): a
// blob that fits a cache line never straddles two, so a check that finds it
// reads it with one memory access (layout 3).
inline uint64_t blob_placement(uint64_t arena_offset, uint64_t used, uint64_t len) {
    const uint64_t in_line = (arena_offset + used) % kCacheLine;
    return len > kCacheLine || in_line + len <= kCacheLine ? used : used + kCacheLine - in_line;
}
// The most arena bytes a blob of len bytes takes, its padding included
// (blobs are 8-byte multiples at 8-byte offsets).
constexpr uint64_t blob_footprint(uint64_t len) { return len <= kCacheLine ? len + kCacheLine - 8 : len; }

// Stable across processes and versions: part of the layout.
inline uint64_t hash_key(const char* key, std::size_t len) { return ms_hash_key(key, len); }
uint32_t crc32(const void* data, std::size_t len, uint32_t seed = 0);

inline uint64_t slot_index(uint64_t fingerprint, uint64_t slot_count) { return ms_slot_index(fingerprint, slot_count); }

constexpr uint8_t kTagEmpty = MS_TAG_EMPTY;
constexpr uint8_t kTagFree = MS_TAG_FREE;
inline uint8_t tag_of(uint64_t fingerprint) { return ms_tag_of(fingerprint); }
inline std::size_t filter_word(uint64_t fingerprint) { return ms_filter_word(fingerprint); }
inline uint64_t filter_bit(uint64_t fingerprint) { return ms_filter_bit(fingerprint); }

}  // namespace mailsuspend::layout
