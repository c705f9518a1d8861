/* The light reader (see the header). */
#include "ms_light.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ms_bus_guard.h"
#include "ms_read.h"

/* A store file replaced under the mapping (deleted and initialised again, a
   restored backup) moves no flag: looked for at most this often. */
#define MS_LIGHT_STAT_INTERVAL_SECS 1
/* A generation retired between the remap and the probe: tries this often. */
#define MS_LIGHT_ATTEMPTS 4

struct ms_light {
	char *path; /* <store_dir>/store */
	void *base;
	size_t size;
	dev_t dev;
	ino_t ino;
	time_t next_stat;
	struct ms_map map;
	char error[160];
};

int ms_ticket_format(char *buf, size_t size, enum ms_service service,
		     const char *key, size_t key_len, const char *store_dir)
{
	int n;

	if ((unsigned)service >= MS_SERVICE_COUNT || key_len == 0 ||
	    memchr(key, ' ', key_len) != NULL || store_dir[0] != '/')
		return 0;
	n = snprintf(buf, size, "1 %u %.*s %s", (unsigned)service, (int)key_len, key, store_dir);
	return n > 0 && (size_t)n < size;
}

int ms_ticket_parse(const char *ticket, struct ms_ticket *t)
{
	const char *key, *space;

	/* "1 <service> <key> <store dir>" */
	if (ticket == NULL || strncmp(ticket, "1 ", 2) != 0 || ticket[2] < '0' ||
	    ticket[2] >= '0' + MS_SERVICE_COUNT || ticket[3] != ' ')
		return 0;
	key = ticket + 4;
	space = strchr(key, ' ');
	if (space == NULL || space == key || space[1] != '/')
		return 0;
	t->service = (enum ms_service)(ticket[2] - '0');
	t->key = key;
	t->key_len = (size_t)(space - key);
	t->store_dir = space + 1;
	return 1;
}

struct ms_light *ms_light_open(const char *store_dir)
{
	struct ms_light *light = calloc(1, sizeof *light);
	size_t len = strlen(store_dir);

	if (light == NULL || (light->path = malloc(len + sizeof "/" MS_STORE_FILE)) == NULL) {
		free(light);
		return NULL;
	}
	memcpy(light->path, store_dir, len);
	memcpy(light->path + len, "/" MS_STORE_FILE, sizeof "/" MS_STORE_FILE);
	ms_bus_guard_install();
	return light;
}

static void unmap(struct ms_light *light)
{
	if (light->base != NULL)
		(void)munmap(light->base, light->size);
	light->base = NULL;
	memset(&light->map, 0, sizeof light->map);
}

void ms_light_close(struct ms_light **_light)
{
	struct ms_light *light = *_light;

	if (light == NULL)
		return;
	*_light = NULL;
	unmap(light);
	free(light->path);
	free(light);
}

static bool fail(struct ms_light *light, const char *what, const char *why)
{
	snprintf(light->error, sizeof light->error, "%s: %s", what, why);
	unmap(light);
	return false;
}

/* The header's checks, under the guard (the file may shrink meanwhile). */
static bool header_readable(struct ms_light *light, const void *base, size_t size)
{
	enum ms_header_problem problem = MS_HEADER_OK;
	bool repair = false;
	sigjmp_buf guard;

	if (sigsetjmp(guard, 0) != 0)
		return fail(light, light->path, "shrank while being read");
	ms_bus_guard_arm(&guard);
	problem = ms_header_check(base, size, false);
	if (problem == MS_HEADER_OK) {
		ms_map_of(base, &light->map);
		repair = ms_map_needs_repair(&light->map);
	}
	ms_bus_guard_arm(NULL);
	if (problem != MS_HEADER_OK)
		return fail(light, light->path, ms_header_problem_text(problem));
	if (repair)
		return fail(light, light->path, "a writer died mid-change before a reboot");
	return true;
}

static bool map_store(struct ms_light *light)
{
	struct stat st;
	void *base;
	int fd;

	unmap(light);
	fd = open(light->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(light, light->path, strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_size < MS_HEADER_SIZE) {
		close(fd);
		return fail(light, light->path, "shorter than its header");
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return fail(light, light->path, strerror(errno));
	light->base = base;
	light->size = (size_t)st.st_size;
	light->dev = st.st_dev;
	light->ino = st.st_ino;
	if (!header_readable(light, base, light->size))
		return false;
	light->error[0] = '\0';
	return true;
}

/* The file at the path is no longer the mapped one, or changed size. */
static bool replaced(struct ms_light *light)
{
	struct timespec now;
	struct stat st;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &now); /* vDSO */
	if (now.tv_sec < light->next_stat)
		return false;
	light->next_stat = now.tv_sec + MS_LIGHT_STAT_INTERVAL_SECS;
	return stat(light->path, &st) < 0 || st.st_dev != light->dev ||
		st.st_ino != light->ino || (size_t)st.st_size != light->size;
}

static bool mapped(struct ms_light *light)
{
	if (light->base != NULL && !replaced(light))
		return true;
	return map_store(light);
}

struct probe_outcome {
	bool current; /* the mapping is the current generation */
	bool flagged; /* a slot flags the service, or could not be read */
	bool busy;    /* a slot stayed locked */
};

/* Probes the mailbox key (if any) and the domain key in the readers' one
   guarded read (ms_probe_keys); false when the file shrank under the
   mapping. */
static bool probe_guarded(struct ms_light *light, const char *key, size_t key_len,
			  const char *at, enum ms_service service, struct probe_outcome *out)
{
	const size_t first = at != key ? 0 : 1; /* "@domain": no mailbox key */
	const char *keys[2] = { key, at };
	const size_t lens[2] = { key_len, key_len - (size_t)(at - key) };
	uint64_t fps[2], indexes[2];
	enum ms_probe probes[2];
	struct ms_slot_copy copies[2];

	for (size_t k = first; k < 2; k++)
		fps[k] = ms_hash_key(keys[k], lens[k]);
	switch (ms_probe_keys(&light->map, 2 - first, keys + first, lens + first, fps + first,
			      probes + first, indexes + first, copies + first)) {
	case MS_READ_FAULT:
		return false;
	case MS_READ_STALE:
		out->current = false;
		return true;
	case MS_READ_DONE:
		break;
	}
	out->current = true;
	for (size_t k = first; k < 2; k++) {
		if (probes[k] == MS_PROBE_BUSY)
			out->busy = true;
		if (probes[k] == MS_PROBE_BUSY ||
		    (probes[k] == MS_PROBE_FOUND && ms_slot_flags(&copies[k], service)))
			out->flagged = true;
	}
	return true;
}

enum ms_light_answer ms_light_check(struct ms_light *light, const char *key, size_t key_len,
				    enum ms_service service)
{
	const char *at = memchr(key, '@', key_len);
	struct probe_outcome out = { false, false, false };

	if (at == NULL)
		return MS_LIGHT_ASK_CORE;
	for (int attempt = 0; attempt < MS_LIGHT_ATTEMPTS && !out.current; attempt++) {
		if ((attempt > 0 || light->base == NULL || replaced(light)) && !map_store(light))
			return MS_LIGHT_ASK_CORE;
		if (!probe_guarded(light, key, key_len, at, service, &out)) {
			fail(light, light->path, "shrank under its mapping");
			return MS_LIGHT_ASK_CORE;
		}
	}
	if (!out.current) {
		snprintf(light->error, sizeof light->error, "%s: replaced again and again", light->path);
		return MS_LIGHT_ASK_CORE;
	}
	if (out.busy)
		snprintf(light->error, sizeof light->error, "%s: a slot stayed locked", light->path);
	return out.flagged ? MS_LIGHT_ASK_CORE : MS_LIGHT_ALLOWED;
}

uint64_t ms_light_change_stamp(struct ms_light *light)
{
	volatile uint64_t stamp = 0;
	sigjmp_buf guard;

	if (!mapped(light))
		return 0;
	if (sigsetjmp(guard, 0) != 0) {
		fail(light, light->path, "shrank under its mapping");
		return 0;
	}
	ms_bus_guard_arm(&guard);
	stamp = ms_change_stamp(&light->map);
	ms_bus_guard_arm(NULL);
	return stamp;
}

const char *ms_light_error(const struct ms_light *light)
{
	return light->error;
}
