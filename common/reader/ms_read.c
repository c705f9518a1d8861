/* The store's read path (see the header). */
#include "ms_read.h"

#include "ms_bus_guard.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct ms_store_header) <= MS_HEADER_SIZE, "header fits its page");
_Static_assert(sizeof(struct ms_slot) == 32, "two slots per cache line");
_Static_assert(sizeof(struct ms_blob_header) == 12, "blob header");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the layout is little-endian");

/* Spins before the reader starts watching the clock. */
#define MS_SPIN_RETRIES 64
/* Then it yields until this much time has passed and gives up (the writer
   died mid-write).  A time budget, not a count of yields: on a busy CPU
   every sched_yield hands over a whole time slice, and 4000 of them held a
   Dovecot/Exim process for 6-16 s per lookup.  A live writer holds a slot
   for a few stores. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* A fuzzed store leaves many slots odd with no writer alive: same path, a
   short spin, so the fuzzer does not spend its time yielding. */
#define MS_GIVE_UP_NS 20000
#define MS_YIELD_WHILE_WAITING 0
#else
#define MS_GIVE_UP_NS 2000000
#define MS_YIELD_WHILE_WAITING 1
#endif

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* The last r (1..7) bytes of key[0..len) as a little-endian word, as a
   memcpy of them into a zeroed word would give, with fixed-size loads only
   (a variable-length memcpy is a libc call; the hash is on every lookup). */
static inline uint64_t tail_word(const char *key, size_t len, size_t r)
{
	uint64_t w;
	uint32_t lo, hi;

	if (len >= 8) {
		memcpy(&w, key + len - 8, 8);
		return w >> (64 - 8 * r);
	}
	key += len - r;
	if (r >= 4) {
		memcpy(&lo, key, 4);
		memcpy(&hi, key + r - 4, 4);
		return lo | ((uint64_t)hi << (8 * (r - 4)));
	}
	return (uint64_t)(unsigned char)key[0] | ((uint64_t)(unsigned char)key[r / 2] << (8 * (r / 2))) |
		((uint64_t)(unsigned char)key[r - 1] << (8 * (r - 1)));
}

uint64_t ms_hash_key(const char *key, size_t len)
{
	/* 64-bit multiply-xorshift over 8-byte words (stable: part of the layout). */
	const uint64_t mul = 0x9E3779B97F4A7C15ULL;
	uint64_t h = 0x6A09E667F3BCC909ULL ^ (len * mul);
	uint64_t w, tail = 0;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, key + i, 8);
		h = (h ^ w) * mul;
		h ^= h >> 29;
	}
	if (len > i)
		tail = tail_word(key, len, len - i);
	h = (h ^ tail) * mul;
	h ^= h >> 32;
	h *= 0xD6E8FEB86659FD93ULL;
	h ^= h >> 32;
	return h;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int64_t monotonic_ns(void)
{
	struct timespec ts; /* vDSO: no system call */

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool ms_read_slot(const struct ms_slot *s, struct ms_slot_copy *c)
{
	int64_t give_up_at = 0, now;
	uint64_t before;

	for (int attempt = 0;; ++attempt) {
		before = LOAD(&s->word0);
		if ((ms_w0_seq(before) & 1) == 0) {
			c->fingerprint = LOAD_RELAXED(&s->fingerprint);
			c->blob = LOAD_RELAXED(&s->blob);
			c->expiry = LOAD_RELAXED(&s->expiry);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (LOAD_RELAXED(&s->word0) == before) {
				c->w0 = before;
				return true;
			}
		}
		if (attempt < MS_SPIN_RETRIES) {
			cpu_relax();
			continue;
		}
		now = monotonic_ns();
		if (give_up_at == 0)
			give_up_at = now + MS_GIVE_UP_NS;
		else if (now >= give_up_at)
			return false;
		if (MS_YIELD_WHILE_WAITING)
			sched_yield();
		else
			cpu_relax();
	}
}

bool ms_blob_has_key(const struct ms_map *m, const struct ms_slot_copy *c,
		     const char *key, size_t key_len)
{
	const uint64_t off = ms_blob_offset(c), len = ms_blob_length(c);
	const unsigned char *p;

	if (off + len > m->arena_size || len < MS_BLOB_KEY_OFFSET + key_len)
		return false;
	p = m->arena + off;
	return p[sizeof(struct ms_blob_header)] == key_len &&
		memcmp(p + MS_BLOB_KEY_OFFSET, key, key_len) == 0;
}

static bool filter_excludes(const struct ms_map *m, const char *key, size_t key_len,
			    uint64_t fp)
{
	return key_len > 0 && key[0] == '@' &&
		(LOAD(&m->header->domain_filter[ms_filter_word(fp)]) & ms_filter_bit(fp)) == 0;
}

/* The tag bytes are walked eight at a time: one word load, and a mask with
   the high bit of each byte that is empty, another of each byte that is the
   key's tag (exact, no carries between bytes: every flagged byte is one). */
#define MS_BYTES_LOW7 0x7F7F7F7F7F7F7F7FULL
#define MS_BYTES_ONE 0x0101010101010101ULL

static inline uint64_t zero_bytes(uint64_t v)
{
	return ~(((v & MS_BYTES_LOW7) + MS_BYTES_LOW7) | v | MS_BYTES_LOW7);
}

/* The word of tags holding index i (the array is padded to a cache line, so
   a whole word is always inside it).  One atomic load of eight bytes that
   writers store one at a time: ThreadSanitizer would call the mixed sizes a
   race, so this load is not instrumented (every other access is). */
__attribute__((no_sanitize("thread")))
static inline uint64_t tag_word(const uint8_t *tags, uint64_t word)
{
	return __atomic_load_n((const uint64_t *)(const void *)tags + word, __ATOMIC_ACQUIRE);
}

/* Whether the slot at index is key's; *copy_r its snapshot.  -1: busy. */
static int slot_is_key(const struct ms_map *m, uint64_t index, const char *key, size_t key_len,
		       uint64_t fp, struct ms_slot_copy *c)
{
	if (!ms_read_slot(&m->slots[index], c))
		return -1;
	return ms_w0_state(c->w0) == MS_SLOT_USED && c->fingerprint == fp &&
		ms_w0_key_len(c->w0) == key_len && ms_blob_has_key(m, c, key, key_len);
}

/* The matches of one word of tags, in chain order, up to its first empty
   tag.  MS_PROBE_BUSY/FOUND end the probe; absent: the chain goes on unless
   empty is set. */
static enum ms_probe probe_word(const struct ms_map *m, uint64_t word, uint64_t empty, uint64_t match,
				const char *key, size_t key_len, uint64_t fp, uint64_t *index_r,
				struct ms_slot_copy *c)
{
	int is_key;

	if (empty != 0)
		match &= (empty & -empty) - 1; /* only the tags before the chain's end */
	for (; match != 0; match &= match - 1) {
		const uint64_t index = word * 8 + (uint64_t)__builtin_ctzll(match) / 8;

		if ((is_key = slot_is_key(m, index, key, key_len, fp, c)) < 0)
			return MS_PROBE_BUSY;
		if (is_key) {
			*index_r = index;
			return MS_PROBE_FOUND;
		}
	}
	return MS_PROBE_ABSENT;
}

/* Out of line: a domain check the filter answers (the common case) pays
   none of the walk's set-up. */
__attribute__((noinline))
static enum ms_probe probe_chain(const struct ms_map *m, const char *key, size_t key_len,
				 uint64_t fp, uint64_t *index_r, struct ms_slot_copy *c)
{
	const uint64_t tag_bytes = ms_tag_of(fp) * MS_BYTES_ONE;
	const uint64_t home = ms_slot_index(fp, m->slot_count);
	const uint64_t words = m->tag_words;
	const uint64_t last_valid = m->last_tags_mask; /* the last word's bytes past the table are no tags */
	uint64_t word = home / 8, valid = ~0ULL << (8 * (home % 8));
	enum ms_probe found;

	/* The home word from the home slot on, then whole words, wrapping at
	   the table's end: every tag once at least (a table with no empty tag). */
	for (uint64_t n = 0; n <= words; ++n) {
		const uint64_t w = tag_word(m->tags, word);
		const uint64_t in_table = word == words - 1 ? valid & last_valid : valid;
		const uint64_t empty = zero_bytes(w) & in_table;
		const uint64_t match = zero_bytes(w ^ tag_bytes) & in_table;

		if ((empty | match) != 0) {
			found = probe_word(m, word, empty, match, key, key_len, fp, index_r, c);
			if (found != MS_PROBE_ABSENT || empty != 0)
				return found;
		}
		valid = ~0ULL;
		if (++word == words)
			word = 0;
	}
	return MS_PROBE_ABSENT;
}

static inline enum ms_probe lookup_probe(const struct ms_map *m, const char *key, size_t key_len,
					 uint64_t fp, uint64_t *index_r, struct ms_slot_copy *c)
{
	if (filter_excludes(m, key, key_len, fp))
		return MS_PROBE_ABSENT;
	return probe_chain(m, key, key_len, fp, index_r, c);
}

enum ms_probe ms_lookup_probe(const struct ms_map *m, const char *key, size_t key_len,
			      uint64_t fp, uint64_t *index_r, struct ms_slot_copy *c)
{
	return lookup_probe(m, key, key_len, fp, index_r, c);
}

enum ms_read ms_probe_keys(const struct ms_map *m, size_t n, const char *const *keys,
			   const size_t *key_lens, const uint64_t *fps,
			   enum ms_probe *probes_r, uint64_t *indexes_r,
			   struct ms_slot_copy *copies_r)
{
	sigjmp_buf guard;

	if (sigsetjmp(guard, 0) != 0) /* no system call: no mask saved */
		return MS_READ_FAULT;
	ms_bus_guard_arm(&guard);
	if (!ms_map_current(m)) {
		ms_bus_guard_arm(NULL);
		return MS_READ_STALE;
	}
	/* Unrolled: after sigsetjmp every loop variable lives on the stack. */
	probes_r[0] = lookup_probe(m, keys[0], key_lens[0], fps[0], &indexes_r[0], &copies_r[0]);
	if (n == 2)
		probes_r[1] = lookup_probe(m, keys[1], key_lens[1], fps[1], &indexes_r[1], &copies_r[1]);
	ms_bus_guard_arm(NULL);
	return MS_READ_DONE;
}

static bool geometry_fits(const struct ms_store_header *h, uint64_t file_size, bool layout1)
{
	const uint64_t slots_end = h->slots_offset + h->slot_count * sizeof(struct ms_slot);
	const uint64_t arena_offset = layout1 ? slots_end : slots_end + ms_tags_size(h->slot_count);

	return h->slot_count != 0 && h->slots_offset == MS_HEADER_SIZE &&
		h->slot_count <= (file_size - MS_HEADER_SIZE) / sizeof(struct ms_slot) &&
		(layout1 || h->tags_offset == slots_end) && h->arena_offset == arena_offset &&
		arena_offset <= file_size && h->arena_size <= file_size - h->arena_offset &&
		h->arena_size <= MS_MAX_ARENA + 16;
}

enum ms_header_problem ms_header_check(const struct ms_store_header *h, uint64_t file_size,
				       bool convertible)
{
	bool older, layout1;

	if (file_size < MS_HEADER_SIZE)
		return MS_HEADER_TRUNCATED;
	if (h->magic != MS_STORE_MAGIC)
		return MS_HEADER_BAD_MAGIC;
	older = convertible && h->layout_version >= MS_OLDEST_CONVERTIBLE_LAYOUT_VERSION;
	if (h->layout_version < MS_LAYOUT_VERSION && !older)
		return MS_HEADER_OLDER_LAYOUT;
	if (h->layout_version > MS_LAYOUT_VERSION)
		return MS_HEADER_NEWER_LAYOUT;
	layout1 = h->layout_version == 1;
	if (h->header_size != MS_HEADER_SIZE)
		return MS_HEADER_BAD_HEADER_SIZE;
	if (h->file_size != file_size)
		return MS_HEADER_FILE_SIZE;
	if (!geometry_fits(h, file_size, layout1))
		return MS_HEADER_GEOMETRY;
	/* A writer sizes the next generation from capacity, so a damaged
	   value must not reach it (it asked for a file of tens of GiB). */
	if (h->capacity > h->slot_count)
		return MS_HEADER_CAPACITY;
	if (LOAD_RELAXED(&h->arena_used) > h->arena_size)
		return MS_HEADER_ARENA_OVERFLOW;
	return MS_HEADER_OK;
}

const char *ms_header_problem_text(enum ms_header_problem problem)
{
	switch (problem) {
	case MS_HEADER_OK: return "readable";
	case MS_HEADER_TRUNCATED: return "file is shorter than its header (truncated?)";
	case MS_HEADER_BAD_MAGIC: return "not a mailsuspend store (bad magic number)";
	case MS_HEADER_OLDER_LAYOUT: return "older layout version (run: mailsuspend rebuild)";
	case MS_HEADER_NEWER_LAYOUT: return "unknown layout version (written by a newer mailsuspend?)";
	case MS_HEADER_BAD_HEADER_SIZE: return "unknown header size";
	case MS_HEADER_FILE_SIZE: return "file size differs from its header (truncated or overwritten?)";
	case MS_HEADER_GEOMETRY: return "inconsistent geometry in header";
	case MS_HEADER_CAPACITY: return "capacity exceeds the slots in the header";
	case MS_HEADER_ARENA_OVERFLOW: return "arena overflows";
	}
	return "unreadable header";
}

void ms_map_of(const void *base, struct ms_map *m)
{
	const unsigned char *bytes = base;
	const struct ms_store_header *h = base;

	m->header = h;
	m->slots = (const struct ms_slot *)(bytes + h->slots_offset);
	m->tags = h->layout_version == MS_LAYOUT_VERSION ? bytes + h->tags_offset : NULL;
	m->arena = bytes + h->arena_offset;
	m->slot_count = h->slot_count;
	m->arena_size = h->arena_size;
	m->tag_words = (h->slot_count + 7) / 8;
	m->last_tags_mask = h->slot_count % 8 == 0 ? ~0ULL : ~(~0ULL << (8 * (h->slot_count % 8)));
}

bool ms_map_needs_repair(const struct ms_map *m)
{
	char boot_id[64];

	/* Clean (the usual case): no open and read of /proc for every
	   process that maps the store. */
	if (LOAD(&m->header->dirty) == 0)
		return false;
	ms_boot_id(boot_id, sizeof boot_id);
	return strncmp(m->header->boot_id, boot_id, sizeof m->header->boot_id) != 0;
}

void ms_boot_id(char *buf, size_t size)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
	char *eol;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if ((eol = strchr(buf, '\n')) != NULL)
		*eol = '\0';
}

uint64_t ms_change_stamp(const struct ms_map *m)
{
	const struct ms_store_header *h = m->header;
	uint64_t stamp = LOAD(&h->seq) ^ (h->generation << 40) ^
		((uint64_t)LOAD(&h->retired) << 63);

	return stamp == 0 ? 1 : stamp;
}
