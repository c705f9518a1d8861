/* The store file's layout, <store.path>/store: the one definition, in C,
   read by the C++ core (common/store/store_layout.hpp names it for C++) and
   by the C reader of the Dovecot mail plugins (ms_light.h).  Every shared
   struct starts with a magic number (after Varnish's shared memory); a
   reader refuses a magic, version or geometry it does not know.

     [header: one 4 KiB page][slot x slot_count][tag x slot_count][arena]

   Slots are 32 bytes, two per cache line, in an open-addressing table with
   linear probing.  Each slot is four 64-bit words read under a per-slot
   seqlock carried in word 0, so readers take no lock and never see a torn
   slot.  The arena is append-only: a blob, once published by a slot, is
   never written again.

   Layout 2 adds derived data for readers, rebuilt from the slots by every
   rebuild and boot salvage and checked by `mailsuspend check`:
    - one tag byte per slot (MS_TAG_EMPTY, MS_TAG_FREE, or ms_tag_of()): a
      reader walks a key's probe chain in the tags (64 to a cache line) and
      reads a slot only where its tag matches.  A writer stores a slot's tag
      before the slot and never returns a tag to empty in place, so the
      tags' chain always covers the slots' chain.
    - a filter of domain keys in the header (one bit per hashed domain key,
      set before the record is written, cleared only by a rebuild): a
      domain check whose bit is clear reads nothing outside the header.
   Writers find keys by the slots alone, so a damaged tag cannot make a
   writer overwrite or duplicate a record.

   Layout 3 changes what is in the arena, not where things are: records in
   the blob form of version 4 (common/store/codec.cpp: 64 bytes for two
   services suspended together with a short reason and an address of 21
   octets, 72 before), and a blob that fits a cache line never straddles
   two.  A check that finds a mailbox reads its tag, its slot and one line
   of record (it read two).  Readers rely on neither: the header and the
   slots are layout 2's.

   C++ sees the shared words as std::atomic (same size and alignment, which
   store_layout.hpp asserts); C reads them with the __atomic builtins. */
#ifndef MS_STORE_H
#define MS_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <atomic>
#define MS_ATOMIC(type) std::atomic<type>
extern "C" {
#else
#define MS_ATOMIC(type) type
#endif

#define MS_STORE_MAGIC 0x31524F5453534DULL /* "MSSTOR1" */
#define MS_LAYOUT_VERSION 3u
/* Older layouts readers refuse and `mailsuspend rebuild` converts (the
   package's postinst runs that): 1 (no tags, no filter) and 2 (the record
   blobs of before version 4, anywhere in the arena). */
#define MS_OLDEST_CONVERTIBLE_LAYOUT_VERSION 1u
#define MS_HEADER_SIZE 4096u
#define MS_DOMAIN_FILTER_WORDS 64u /* 4096 bits: 512 bytes of the header */
#define MS_MAX_ARENA 0xFFFFFFF0ULL /* blob offsets are 32-bit */

/* The store's files in <store.path>. */
#define MS_STORE_FILE "store"
/* Written by every writer after each change it applies: long-lived host
   processes watch it (inotify) and re-check their sessions when it fires. */
#define MS_NOTIFY_FILE "changed"

struct ms_store_header {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t header_size;
	uint64_t generation;      /* bumped by every rebuild */
	uint64_t capacity;        /* targets this generation was sized for */
	uint64_t slot_count;
	uint64_t slots_offset;
	uint64_t arena_offset;
	uint64_t arena_size;
	uint64_t file_size;
	MS_ATOMIC(uint64_t) arena_used;     /* writer-owned */
	MS_ATOMIC(uint64_t) used_slots;     /* writer-owned: slots holding a record */
	MS_ATOMIC(uint64_t) seq;            /* last applied change */
	MS_ATOMIC(uint64_t) checkpoint_seq; /* everything up to here is msync'ed */
	MS_ATOMIC(uint32_t) retired;        /* 1: a newer generation replaced this file */
	MS_ATOMIC(uint32_t) dirty;          /* 1: a writer is applying changes */
	char boot_id[40];                   /* kernel boot id when last checkpointed */
	/* The last change that left text no longer in force in the arena's
	   superseded blobs; 0: none since this generation was written. */
	MS_ATOMIC(uint64_t) lifted_text_seq;
	/* Layout 2: appended, so every field above keeps its layout-1 offset. */
	uint64_t tags_offset; /* slot_count tag bytes */
	MS_ATOMIC(uint64_t) domain_filter[MS_DOMAIN_FILTER_WORDS];
};

/* Word 0 of a slot: seq(32) | state(8) | key_len(8) | mode(8) | suspended(8).
   "suspended" has one bit per service, MS_SERVICE_* below. */
struct ms_slot {
	MS_ATOMIC(uint64_t) word0;
	MS_ATOMIC(uint64_t) fingerprint;
	MS_ATOMIC(uint64_t) blob;   /* offset into the arena (32) | length (32) */
	MS_ATOMIC(uint64_t) expiry; /* earliest expiry among suspended services (epoch, 0 = none) */
};

enum ms_slot_state { MS_SLOT_EMPTY = 0, MS_SLOT_USED = 0xA5, MS_SLOT_TOMBSTONE = 0x5A };

/* The bit of each service in a slot's "suspended" byte (part of the layout:
   the C++ model's Service enum has these values). */
enum ms_service {
	MS_SERVICE_IMAP = 0,
	MS_SERVICE_POP3 = 1,
	MS_SERVICE_WEBMAIL = 2,
	MS_SERVICE_SEND = 3,
	MS_SERVICE_WEBMAIL_SEND = 4,
	MS_SERVICE_RECEIVE = 5,
	MS_SERVICE_SIEVE = 6,
	MS_SERVICE_COUNT = 7,
};

/* A record blob in the arena (8-byte aligned): this header, then u8
   key_len, the key's bytes, then the record body (common/store/codec.cpp). */
struct ms_blob_header {
	uint16_t magic;
	uint16_t version;
	uint32_t length; /* whole blob, header included */
	uint32_t crc;    /* CRC-32 of everything after the header */
};
#define MS_BLOB_MAGIC 0xB10Bu
#define MS_BLOB_KEY_OFFSET (sizeof(struct ms_blob_header) + 1)
/* Layout 3: a blob of at most MS_CACHE_LINE bytes lies inside one line of
   the file (writers pad before it), so a check that finds it reads it with
   one memory access. */
#define MS_CACHE_LINE 64u

/* Bytes of the tag array, whole cache lines: the arena starts after it, on
   a line when slot_count is even (else 32 bytes into one; layout 3's
   placement counts lines from the start of the file). */
static inline uint64_t ms_tags_size(uint64_t slot_count) { return (slot_count + 63) / 64 * 64; }

/* Tag bytes.  A used slot's tag comes from bits of the fingerprint that
   ms_slot_index (its high bits times the slot count) barely uses. */
#define MS_TAG_EMPTY 0 /* never used: a probe chain ends here */
#define MS_TAG_FREE 1  /* erased (tombstone): the chain goes on */

static inline uint32_t ms_w0_seq(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint8_t ms_w0_state(uint64_t w) { return (uint8_t)(w >> 24); }
static inline uint8_t ms_w0_key_len(uint64_t w) { return (uint8_t)(w >> 16); }
static inline uint8_t ms_w0_mode(uint64_t w) { return (uint8_t)(w >> 8); }
static inline uint8_t ms_w0_suspended(uint64_t w) { return (uint8_t)w; }
static inline uint64_t ms_make_w0(uint32_t seq, uint8_t state, uint8_t key_len,
				  uint8_t mode, uint8_t suspended)
{
	return ((uint64_t)seq << 32) | ((uint64_t)state << 24) |
		((uint64_t)key_len << 16) | ((uint64_t)mode << 8) | suspended;
}

/* The home slot of a fingerprint: its high bits scaled to the table. */
static inline uint64_t ms_slot_index(uint64_t fingerprint, uint64_t slot_count)
{
	return (uint64_t)(((unsigned __int128)fingerprint * slot_count) >> 64);
}

static inline uint8_t ms_tag_of(uint64_t fingerprint)
{
	return (uint8_t)(2 + (fingerprint & 0xFFFF) % 254);
}

/* The domain filter's word and bit for a domain key's fingerprint. */
static inline size_t ms_filter_word(uint64_t fingerprint)
{
	return (size_t)((fingerprint >> 16) % MS_DOMAIN_FILTER_WORDS);
}
static inline uint64_t ms_filter_bit(uint64_t fingerprint)
{
	return (uint64_t)1 << ((fingerprint >> 24) & 63);
}

#ifdef __cplusplus
}
#endif

#endif
