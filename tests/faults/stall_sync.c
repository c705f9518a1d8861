/* A slow disk for mailsuspend's files, preloaded into the Exim daemon by
   test_host_lock.py (issue 13 item 3): fsync, fdatasync, sync_file_range
   and syncfs of a file under one of the prefixes in MS_STALL_PREFIXES
   (':'-separated), and every msync(MS_SYNC), wait while the file
   MS_STALL_FILE exists (60 s at most), as a flush to a stalled device does.
   Exim's own spool files are not under the prefixes: its fsync before the
   250 reply stays fast, so what the test times is mailsuspend's part.

   The variables are read when the library is loaded: Exim clears its
   environment when it starts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static char prefixes[4096];
static char stall_file[4096];

__attribute__((constructor)) static void read_settings(void)
{
	const char *p = getenv("MS_STALL_PREFIXES");
	const char *f = getenv("MS_STALL_FILE");

	if (p != NULL)
		snprintf(prefixes, sizeof(prefixes), "%s", p);
	if (f != NULL)
		snprintf(stall_file, sizeof(stall_file), "%s", f);
}

static int under_a_prefix(int fd)
{
	char link[64], path[4096];
	ssize_t n;
	const char *p = prefixes;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	while (*p != '\0') {
		size_t len = strcspn(p, ":");

		if (len > 0 && strncmp(path, p, len) == 0)
			return 1;
		p += len;
		if (*p == ':')
			p++;
	}
	return 0;
}

static void stall(void)
{
	const struct timespec step = { 0, 20 * 1000 * 1000 };
	int i;

	for (i = 0; i < 3000 && stall_file[0] != '\0' && access(stall_file, F_OK) == 0; i++)
		nanosleep(&step, NULL);
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int fsync(int fd)
{
	if (under_a_prefix(fd))
		stall();
	return NEXT(fsync)(fd);
}

int fdatasync(int fd)
{
	if (under_a_prefix(fd))
		stall();
	return NEXT(fdatasync)(fd);
}

int syncfs(int fd)
{
	if (under_a_prefix(fd))
		stall();
	return NEXT(syncfs)(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
	if (under_a_prefix(fd))
		stall();
	return NEXT(sync_file_range)(fd, offset, nbytes, flags);
}

int msync(void *addr, size_t length, int flags)
{
	if (flags & MS_SYNC)
		stall();
	return NEXT(msync)(addr, length, flags);
}
