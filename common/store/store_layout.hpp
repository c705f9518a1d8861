// On-disk and in-memory layout of the store file <store.path>/store.
// Every shared struct starts with a magic number (after Varnish's shared
// memory); a reader refuses a magic, version or geometry it does not know.
//
//   [Header: one 4 KiB page][Slot x slot_count][tag x slot_count][arena: record blobs]
//
// Slots are 32 bytes, two per cache line, in an open-addressing table with
// linear probing.  Each slot is four 64-bit atomics read under a per-slot
// seqlock carried in word 0, so readers take no lock and never see a torn
// slot.  The arena is append-only: a blob, once published by a slot, is
// never written again, so readers may read it without further checks.
//
// Layout 2 adds derived data for readers, rebuilt from the slots by every
// rebuild and boot salvage, and checked by `mailsuspend check`:
//  - one tag byte per slot (kTagEmpty, kTagFree, or tag_of(fingerprint)):
//    a reader walks a key's probe chain in the tags (64 to a cache line,
//    about 13 of them for a miss at 80 % load) and reads a slot only where
//    its tag matches.  A writer stores a slot's tag before the slot, and
//    never returns a tag to kTagEmpty in place, so the tags' chain always
//    covers the slots' chain: a writer that dies between the two leaves a
//    tag over an empty slot (skipped), never a record without its tag.
//  - a filter of domain keys in the header (one bit per hashed domain key,
//    set before the record is written, cleared only by a rebuild): a domain
//    check whose bit is clear reads nothing outside the header page.
// Writers find keys by the slots alone, so a damaged tag cannot make a
// writer overwrite or duplicate a record.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mailsuspend::layout {

constexpr uint64_t kStoreMagic = 0x31524F5453534DULL;   // "MSSTOR1"
constexpr uint32_t kLayoutVersion = 2;
// Layout 1 (no tags, no filter): readers refuse it; `mailsuspend rebuild`
// converts it (the package's postinst runs that).
constexpr uint32_t kConvertibleLayoutVersion = 1;
constexpr uint64_t kHeaderSize = 4096;
constexpr uint16_t kBlobMagic = 0xB10B;
constexpr uint32_t kJournalEntryMagic = 0x314A534D;     // "MSJ1"
constexpr uint32_t kJournalCommitMagic = 0x434A534D;    // "MSJC"
constexpr double kMaxLoad = 0.80;                       // slots in use / slot_count
constexpr std::size_t kDomainFilterWords = 64;          // 4096 bits: 512 bytes of the header

struct Header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t generation;      // bumped by every rebuild
    uint64_t capacity;        // targets this generation was sized for
    uint64_t slot_count;
    uint64_t slots_offset;
    uint64_t arena_offset;
    uint64_t arena_size;
    uint64_t file_size;
    std::atomic<uint64_t> arena_used;      // writer-owned
    std::atomic<uint64_t> used_slots;      // writer-owned: slots holding a record
    std::atomic<uint64_t> seq;             // last applied change
    std::atomic<uint64_t> checkpoint_seq;  // everything up to here is msync'ed
    std::atomic<uint32_t> retired;         // 1: a newer generation replaced this file
    std::atomic<uint32_t> dirty;           // 1: a writer is applying changes
    char boot_id[40];                      // kernel boot id when last checkpointed
    // The last change that left text no longer in force (a lifted or replaced
    // reason) in the arena's superseded blobs, which the read group can read;
    // 0: none since this generation was written.  drop_lifted_text() (the
    // sweep) rewrites the store then.  Zero in files of earlier builds.
    std::atomic<uint64_t> lifted_text_seq;
    // Layout 2: appended, so every field above keeps its layout-1 offset.
    uint64_t tags_offset;                  // slot_count tag bytes
    std::atomic<uint64_t> domain_filter[kDomainFilterWords];
};
static_assert(sizeof(Header) <= kHeaderSize);

// Word 0 of a slot: seq(32) | state(8) | key_len(8) | mode(8) | suspended(8).
enum SlotState : uint8_t { kEmpty = 0, kUsed = 0xA5, kTombstone = 0x5A };

struct Slot {
    std::atomic<uint64_t> word0;
    std::atomic<uint64_t> fingerprint;
    std::atomic<uint64_t> blob;     // offset into arena (32) | length (32)
    std::atomic<uint64_t> expiry;   // earliest expiry among suspended services (epoch, 0 = none)
};
static_assert(sizeof(Slot) == 32);

inline uint32_t w0_seq(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
inline uint8_t w0_state(uint64_t w) { return static_cast<uint8_t>(w >> 24); }
inline uint8_t w0_key_len(uint64_t w) { return static_cast<uint8_t>(w >> 16); }
inline uint8_t w0_mode(uint64_t w) { return static_cast<uint8_t>(w >> 8); }
inline uint8_t w0_suspended(uint64_t w) { return static_cast<uint8_t>(w); }
inline uint64_t make_w0(uint32_t seq, uint8_t state, uint8_t key_len, uint8_t mode, uint8_t suspended) {
    return (uint64_t{seq} << 32) | (uint64_t{state} << 24) | (uint64_t{key_len} << 16) |
           (uint64_t{mode} << 8) | suspended;
}

// A record blob in the arena (8-byte aligned):
//   BlobHeader, then u8 key_len, key bytes, then the record body (codec.cpp).
struct BlobHeader {
    uint16_t magic;
    uint16_t version;
    uint32_t length;  // whole blob, header included
    uint32_t crc;     // CRC-32 of everything after the header
};
static_assert(sizeof(BlobHeader) == 12);
constexpr std::size_t kBlobKeyOffset = sizeof(BlobHeader) + 1;

// Stable across processes and versions: part of the layout.
uint64_t hash_key(const char* key, std::size_t len);
uint32_t crc32(const void* data, std::size_t len, uint32_t seed = 0);

inline uint64_t slot_index(uint64_t fingerprint, uint64_t slot_count) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(fingerprint) * slot_count) >> 64);
}

// Tag bytes.  A used slot's tag comes from bits of the fingerprint that
// slot_index (its high bits times the slot count) barely uses.
constexpr uint8_t kTagEmpty = 0;  // never used: a probe chain ends here
constexpr uint8_t kTagFree = 1;   // erased (tombstone): the chain goes on
inline uint8_t tag_of(uint64_t fingerprint) { return static_cast<uint8_t>(2 + (fingerprint & 0xFFFF) % 254); }

// The domain filter's bit for a domain key's fingerprint: word and mask.
inline std::size_t filter_word(uint64_t fingerprint) { return (fingerprint >> 16) % kDomainFilterWords; }
inline uint64_t filter_bit(uint64_t fingerprint) { return uint64_t{1} << ((fingerprint >> 24) & 63); }

}  // namespace mailsuspend::layout
