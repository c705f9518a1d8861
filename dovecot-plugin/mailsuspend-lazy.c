/* The core, loaded on first use in mail processes (see the header). */
#include "lib.h"
#include "module-dir.h"
#include "mailsuspend-dovecot.h"
#include "mailsuspend-lazy.h"

#include <dlfcn.h>

#define MAILSUSPEND_CORE_MODULE "mailsuspend/libmailsuspend_core.so"

typedef struct mailsuspend_handle *
mailsuspend_open_func_t(const char *, mailsuspend_log_func_t *, void *,
			const char **);
typedef void mailsuspend_count_event_func_t(struct mailsuspend_handle *,
		enum mailsuspend_event, const char *);
typedef void mailsuspend_close_func_t(struct mailsuspend_handle **);
typedef unsigned long long
mailsuspend_change_stamp_func_t(struct mailsuspend_handle *);
typedef const char *
mailsuspend_notify_path_func_t(struct mailsuspend_handle *);
typedef void mailsuspend_check_login_func_t(struct mailsuspend_handle *,
		const char *, const char *, const char *,
		struct mailsuspend_result *);

static struct {
	char *path;
	void *dl;
	struct mailsuspend_handle *handle;
	/* What the core logs: the module's own event (the handle outlives any
	   one user; a mail process's global log prefix names its user). */
	struct event *event;
	mailsuspend_close_func_t *close;
	mailsuspend_check_login_func_t *check_login;
	mailsuspend_count_event_func_t *count_event;
	mailsuspend_change_stamp_func_t *change_stamp;
	mailsuspend_notify_path_func_t *notify_path;
	bool failed;
} core;

void mailsuspend_lazy_init(const struct module *module)
{
	const char *slash = strrchr(module->path, '/');
	const char *dir = slash == NULL ? "." :
		t_strdup_until(module->path, slash);

	i_free(core.path);
	core.path = i_strconcat(dir, "/", MAILSUSPEND_CORE_MODULE, NULL);
}

void mailsuspend_lazy_deinit(void)
{
	if (core.handle != NULL)
		core.close(&core.handle);
	event_unref(&core.event);
	if (core.dl != NULL)
		(void)dlclose(core.dl);
	i_free(core.path);
	i_zero(&core);
}

static bool core_load_failed(struct event *event, const char *what)
{
	e_error(event, "mailsuspend: %s: %s (live sessions are not re-checked)",
		core.path, what);
	if (core.dl != NULL)
		(void)dlclose(core.dl);
	core.dl = NULL;
	core.failed = TRUE;
	return FALSE;
}

static bool core_open(struct event *event, const char *config_path)
{
	mailsuspend_open_func_t *open_func;
	const char *error = NULL;

	if (core.handle != NULL)
		return TRUE;
	if (core.failed || core.path == NULL)
		return FALSE;
	core.dl = dlopen(core.path, RTLD_NOW | RTLD_LOCAL);
	if (core.dl == NULL)
		return core_load_failed(event, dlerror());
	open_func = (mailsuspend_open_func_t *)dlsym(core.dl, "mailsuspend_open");
	core.close = (mailsuspend_close_func_t *)dlsym(core.dl, "mailsuspend_close");
	core.check_login = (mailsuspend_check_login_func_t *)
		dlsym(core.dl, "mailsuspend_check_login");
	core.count_event = (mailsuspend_count_event_func_t *)
		dlsym(core.dl, "mailsuspend_count_event");
	core.change_stamp = (mailsuspend_change_stamp_func_t *)
		dlsym(core.dl, "mailsuspend_change_stamp");
	core.notify_path = (mailsuspend_notify_path_func_t *)
		dlsym(core.dl, "mailsuspend_notify_path");
	if (open_func == NULL || core.close == NULL || core.check_login == NULL ||
	    core.count_event == NULL || core.change_stamp == NULL ||
	    core.notify_path == NULL)
		return core_load_failed(event, "not a mailsuspend core module");
	if (config_path != NULL && *config_path == '\0')
		config_path = NULL;
	/* error is logged by the first lookup that meets it (once) */
	core.event = event_create(NULL);
	core.handle = open_func(config_path, mailsuspend_dovecot_log, core.event,
				&error);
	if (core.handle == NULL) {
		event_unref(&core.event);
		return core_load_failed(event, "out of memory");
	}
	return TRUE;
}

void mailsuspend_lazy_check_login(struct event *event,
				  const char *config_path, const char *user,
				  const char *protocol, const char *client_ip,
				  struct mailsuspend_result *result_r)
{
	if (core_open(event, config_path)) {
		core.check_login(core.handle, user, protocol, client_ip,
				 result_r);
		return;
	}
	i_zero(result_r);
	result_r->verdict = MAILSUSPEND_ALLOW;
	result_r->service = "none";
	result_r->scope = "none";
}

void mailsuspend_lazy_count_event(enum mailsuspend_event event, const char *label)
{
	if (core.handle != NULL)
		core.count_event(core.handle, event, label);
}

unsigned long long mailsuspend_lazy_change_stamp(void)
{
	return core.handle == NULL ? 0 : core.change_stamp(core.handle);
}

const char *mailsuspend_lazy_notify_path(struct event *event,
					 const char *config_path)
{
	return core_open(event, config_path) ? core.notify_path(core.handle) :
		NULL;
}
