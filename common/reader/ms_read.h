/* The store's read path, in C and libc only: the key hash, the seqlock
   read of a slot, the probe, the checks of a mapped header, the change
   stamp and the hot decision.  The C++ StoreReader (common/store) and the
   Dovecot mail plugins' light reader (ms_light.h) both run this code: one
   implementation.  Nothing here allocates, locks or makes a system call
   (ms_boot_id excepted); callers that map a file someone may truncate run
   these under the SIGBUS guard (ms_bus_guard.h). */
#ifndef MS_READ_H
#define MS_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ms_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One mapped generation, as the readers see it. */
struct ms_map {
	const struct ms_store_header *header; /* NULL: nothing mapped */
	const struct ms_slot *slots;
	const uint8_t *tags;                  /* NULL: a layout-1 file (convert only) */
	const unsigned char *arena;
	uint64_t slot_count;
	uint64_t arena_size;
	/* The probe's constants, set by ms_map_of: words of tags, and the
	   bytes of the last word that are tags (the rest is padding). */
	uint64_t tag_words;
	uint64_t last_tags_mask;
};

/* A slot as one consistent snapshot of its four words. */
struct ms_slot_copy {
	uint64_t w0, fingerprint, blob, expiry;
};
static inline uint32_t ms_blob_offset(const struct ms_slot_copy *c) { return (uint32_t)(c->blob >> 32); }
static inline uint32_t ms_blob_length(const struct ms_slot_copy *c) { return (uint32_t)c->blob; }

enum ms_probe { MS_PROBE_FOUND, MS_PROBE_ABSENT, MS_PROBE_BUSY };

/* Why a header cannot be read (ms_header_check). */
enum ms_header_problem {
	MS_HEADER_OK = 0,
	MS_HEADER_TRUNCATED,      /* shorter than its header */
	MS_HEADER_BAD_MAGIC,
	MS_HEADER_OLDER_LAYOUT,   /* `mailsuspend rebuild` converts it */
	MS_HEADER_NEWER_LAYOUT,
	MS_HEADER_BAD_HEADER_SIZE,
	MS_HEADER_FILE_SIZE,      /* the file's size is not the header's */
	MS_HEADER_GEOMETRY,
	MS_HEADER_CAPACITY,       /* capacity exceeds the slots */
	MS_HEADER_ARENA_OVERFLOW,
};

/* Stable across processes and versions: part of the layout. */
uint64_t ms_hash_key(const char *key, size_t len);

/* Seqlock read with bounded waiting (a time budget: a writer that died
   mid-write leaves its slot odd); false when the slot stayed locked. */
bool ms_read_slot(const struct ms_slot *slot, struct ms_slot_copy *copy_r);

/* Whether the blob a slot points at holds exactly key. */
bool ms_blob_has_key(const struct ms_map *map, const struct ms_slot_copy *copy,
		     const char *key, size_t key_len);

/* The readers' probe: key's chain in the tag bytes, reading a slot only
   where the tag is the key's; the chain ends at the first empty tag.  A
   domain key ("@...") whose filter bit is clear is absent at once.  On
   MS_PROBE_FOUND, *index_r and *copy_r are the record's slot. */
enum ms_probe ms_lookup_probe(const struct ms_map *map, const char *key, size_t key_len,
			      uint64_t fingerprint, uint64_t *index_r,
			      struct ms_slot_copy *copy_r);

/* A lookup's one read of the mapping: under the SIGBUS guard
   (ms_bus_guard.h), ms_map_current, then ms_lookup_probe of each of n keys
   (probes_r, indexes_r, copies_r: one each).  One guard and one header
   check for a mailbox and its domain.  n: 1 or 2. */
enum ms_read { MS_READ_DONE, MS_READ_STALE /* remap, read again */, MS_READ_FAULT /* SIGBUS */ };
enum ms_read ms_probe_keys(const struct ms_map *map, size_t n, const char *const *keys,
			   const size_t *key_lens, const uint64_t *fingerprints,
			   enum ms_probe *probes_r, uint64_t *indexes_r,
			   struct ms_slot_copy *copies_r);

/* Whether a header describes a layout this build reads and fits a file of
   file_size bytes.  convertible: a layout-1 file passes too (for the writer
   that converts it). */
enum ms_header_problem ms_header_check(const struct ms_store_header *header,
				       uint64_t file_size, bool convertible);
/* A short text for a problem, e.g. "not a mailsuspend store (bad magic number)". */
const char *ms_header_problem_text(enum ms_header_problem problem);

/* The map describing a mapped file whose header passed ms_header_check. */
void ms_map_of(const void *base, struct ms_map *map_r);

/* The mapped generation is still the store and still readable: not retired
   by a rebuild, and its header unchanged in what readers rely on (garbage
   written over a mapped file in place makes the store unavailable instead of
   answering from garbage).  Checked on every lookup: inline. */
static inline bool ms_map_current(const struct ms_map *m)
{
	const struct ms_store_header *h = m->header;
#ifdef __cplusplus
	const uint32_t retired = h->retired.load(std::memory_order_acquire);
#else
	const uint32_t retired = __atomic_load_n(&h->retired, __ATOMIC_ACQUIRE);
#endif

	return retired == 0 && h->magic == MS_STORE_MAGIC &&
		h->layout_version == MS_LAYOUT_VERSION && h->slot_count == m->slot_count &&
		h->arena_size == m->arena_size;
}

/* A writer died mid-change and the machine rebooted since: the file's
   pages may be half on disk until a writer's repair.  Reads the kernel's
   boot id only when the header says a writer is mid-change (on open, not
   per lookup). */
bool ms_map_needs_repair(const struct ms_map *map);

/* The kernel's boot id into buf (NUL-terminated; "" if unknown).  One
   open and read. */
void ms_boot_id(char *buf, size_t size);

/* A number that changes whenever the store changes (any writer, a rebuilt
   generation); never 0 for a mapped store. */
uint64_t ms_change_stamp(const struct ms_map *map);

/* The hot decision: whether the slot a lookup found flags service as
   suspended (before expiry; only the full record says whether it is still
   in force).  A check whose mailbox and domain slots flag nothing allows
   without reading a record. */
static inline bool ms_slot_flags(const struct ms_slot_copy *copy, enum ms_service service)
{
	return (ms_w0_suspended(copy->w0) >> service) & 1;
}

#ifdef __cplusplus
}
#endif

#endif
