/* Re-checks without the core (see the header). */
#include "lib.h"
#include "mail-user.h"
#include "mailsuspend-light.h"

#include "ms_light.h"

/* One reader per process, for the store of the tickets it sees (a mail
   process serves one user by default; all of them name the same store). */
static struct {
	char *store_dir;
	struct ms_light *reader;
} light;

static bool user_ticket(struct mail_user *user, struct ms_ticket *ticket_r)
{
	return ms_ticket_parse(mail_user_plugin_getenv(user, MS_TICKET_FIELD),
			       ticket_r) != 0;
}

static struct ms_light *reader_for(const char *store_dir)
{
	if (light.reader != NULL && strcmp(light.store_dir, store_dir) == 0)
		return light.reader;
	mailsuspend_light_deinit();
	light.reader = ms_light_open(store_dir);
	if (light.reader != NULL)
		light.store_dir = i_strdup(store_dir);
	return light.reader;
}

bool mailsuspend_light_allows(struct mail_user *user)
{
	struct ms_ticket ticket;
	struct ms_light *reader;

	if (!user_ticket(user, &ticket) ||
	    (reader = reader_for(ticket.store_dir)) == NULL)
		return FALSE;
	if (ms_light_check(reader, ticket.key, ticket.key_len,
			   ticket.service) == MS_LIGHT_ALLOWED)
		return TRUE;
	if (*ms_light_error(reader) != '\0')
		e_debug(user->event, "mailsuspend: %s", ms_light_error(reader));
	return FALSE;
}

const char *mailsuspend_light_notify_path(struct mail_user *user)
{
	struct ms_ticket ticket;

	if (!user_ticket(user, &ticket))
		return NULL;
	return t_strconcat(ticket.store_dir, "/" MS_NOTIFY_FILE, NULL);
}

unsigned long long mailsuspend_light_change_stamp(void)
{
	return light.reader == NULL ? 0 : ms_light_change_stamp(light.reader);
}

void mailsuspend_light_deinit(void)
{
	ms_light_close(&light.reader);
	i_free(light.store_dir);
}
