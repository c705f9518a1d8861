/* What a Dovecot mail process pays the first time it needs the core: load
   libmailsuspend_core.so (RTLD_NOW | RTLD_LOCAL, as mailsuspend-lazy.c
   does), open the config and the store, make one login check.

   Plain C, like the mail processes, so no C++ runtime is already loaded.
   Forks --rounds children per side, alternating; a baseline child only
   exits, the other loads the core first.  Reports the median CPU time
   (user + system, from wait4) of each side and the difference.  With
   --like-imap, the parent first loads the libraries an imap process has
   (libdovecot-storage, libdovecot), so symbol lookups search the same scope.
   With --light STORE_DIR, a third side does what a session with a ticket
   does instead (mailsuspend-light.h): the C reader, linked into the
   plugin, maps the store and checks USER (a normalised key) for imap.

   core_load [--rounds N] [--like-imap] [--light STORE_DIR] CORE_MODULE CONFIG [USER] */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailsuspend/mailsuspend.h"
#include "ms_light.h"

static const char *const imap_libraries[] = {
	"/usr/lib/dovecot/libdovecot-storage.so.0",
	"/usr/lib/dovecot/libdovecot.so.0",
};

typedef struct mailsuspend_handle *open_func(const char *, mailsuspend_log_func_t *,
					     void *, const char **);
typedef void check_login_func(struct mailsuspend_handle *, const char *, const char *,
			      const char *, struct mailsuspend_result *);

/* The child's work; its exit status tells the parent whether it worked. */
static int load_and_check(const char *module, const char *config, const char *user)
{
	void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "core_load: %s\n", dlerror());
		return 1;
	}
	open_func *open_core = (open_func *)dlsym(dl, "mailsuspend_open");
	check_login_func *check_login = (check_login_func *)dlsym(dl, "mailsuspend_check_login");
	if (open_core == NULL || check_login == NULL) {
		fprintf(stderr, "core_load: %s is not a mailsuspend core module\n", module);
		return 1;
	}
	const char *error = NULL;
	struct mailsuspend_handle *ms = open_core(config, NULL, NULL, &error);
	struct mailsuspend_result result;
	if (ms == NULL)
		return 1;
	check_login(ms, user, "imap", "127.0.0.1", &result);
	if (error != NULL || result.fail_policy) {
		fprintf(stderr, "core_load: the store is not readable: %s\n",
			error != NULL ? error : result.text);
		return 1;
	}
	return 0;
}

/* The ticket's way: the C reader maps the store and checks user. */
static int light_check(const char *store_dir, const char *user)
{
	struct ms_light *light = ms_light_open(store_dir);

	if (light == NULL ||
	    (ms_light_check(light, user, strlen(user), MS_SERVICE_IMAP) != MS_LIGHT_ALLOWED &&
	     *ms_light_error(light) != '\0')) {
		fprintf(stderr, "core_load: --light: %s\n", light ? ms_light_error(light) : "no memory");
		return 1;
	}
	ms_light_close(&light);
	return 0;
}

enum side { SIDE_BASE, SIDE_CORE, SIDE_LIGHT };

/* CPU milliseconds of one child, or -1 when it failed; its minor page
   faults in *faults_r. */
static double child_cpu_ms(enum side side, const char *module, const char *config, const char *user,
			   const char *store_dir, double *faults_r)
{
	pid_t pid = fork();
	if (pid == 0) {
		_exit(side == SIDE_CORE ? load_and_check(module, config, user) :
		      side == SIDE_LIGHT ? light_check(store_dir, user) : 0);
	}
	int status = 0;
	struct rusage ru;
	if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || status != 0)
		return -1;
	*faults_r = (double)ru.ru_minflt;
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof *v, by_value);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int usage(void)
{
	fprintf(stderr, "usage: core_load [--rounds N] [--like-imap] [--light STORE_DIR] "
		"CORE_MODULE CONFIG [USER]\n");
	return 2;
}

int main(int argc, char **argv)
{
	int rounds = 500, like_imap = 0, i = 1;
	const char *store_dir = NULL;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--like-imap") == 0)
			like_imap = 1;
		else if (strcmp(argv[i], "--light") == 0 && i + 1 < argc)
			store_dir = argv[++i];
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
			rounds = atoi(argv[++i]);
		else
			return usage();
	}
	if (argc - i < 2 || argc - i > 3)
		return usage();
	const char *module = argv[i], *config = argv[i + 1];
	const char *user = argc - i == 3 ? argv[i + 2] : "nobody@example.com";
	for (size_t k = 0; like_imap && k < sizeof imap_libraries / sizeof *imap_libraries; k++) {
		if (dlopen(imap_libraries[k], RTLD_NOW | RTLD_GLOBAL) == NULL) {
			fprintf(stderr, "core_load: --like-imap: %s\n", dlerror());
			return 1;
		}
	}
	double *cpu[3], *faults[3], med_cpu[3] = { 0 }, med_faults[3] = { 0 };
	const int sides = store_dir != NULL ? 3 : 2;
	for (int k = 0; k < 3; k++) {
		cpu[k] = calloc(rounds, sizeof *cpu[k]);
		faults[k] = calloc(rounds, sizeof *faults[k]);
		if (cpu[k] == NULL || faults[k] == NULL)
			return 1;
	}
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < sides; k++) {
			cpu[k][r] = child_cpu_ms((enum side)k, module, config, user, store_dir,
						 &faults[k][r]);
			if (cpu[k][r] < 0) {
				fprintf(stderr, "core_load: a child failed (round %d)\n", r + 1);
				return 1;
			}
		}
	}
	for (int k = 0; k < sides; k++) {
		med_cpu[k] = median(cpu[k], rounds);
		med_faults[k] = median(faults[k], rounds);
	}
	const double b = med_cpu[0], c = med_cpu[1], bf = med_faults[0], cf = med_faults[1];
	printf("%d children each%s: fork+exit %.3f ms CPU, + load core, open, one check %.3f ms "
	       "(+%.3f ms); minor page faults %.0f -> %.0f (+%.0f)\n", rounds,
	       like_imap ? ", imap's libraries loaded" : "", b, c, c - b, bf, cf, cf - bf);
	if (sides == 3) {
		printf("C reader instead (map the store, one check) %.3f ms (+%.3f ms); "
		       "minor page faults %.0f (+%.0f)\n", med_cpu[2], med_cpu[2] - b,
		       med_faults[2], med_faults[2] - bf);
	}
	for (int k = 0; k < 3; k++) {
		free(cpu[k]);
		free(faults[k]);
	}
	return 0;
}
