/*
 * mdmbus_guard: on the embedded stack's PostgreSQL server, only the superuser sets a password.
 *
 * PostgreSQL lets every role change its own password (ALTER ROLE <itself> PASSWORD ...), and
 * no grant or event trigger takes that away. A stolen service credential could then lock the
 * service out, or keep a door open after the password it was stolen with is rotated. This
 * module, loaded by shared_preload_libraries (mdmbus/stack/pg_guard.py builds it against the
 * server's headers), refuses every password given by anyone but a superuser, which is
 * provisioning. Services log in by certificate and have no password at all; operators' roles
 * get theirs from provisioning.
 */
#include "postgres.h"

#include "commands/user.h"
#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static check_password_hook_type previous_hook = NULL;

static void
mdmbus_check_password(const char *username, const char *shadow_pass,
					  PasswordType password_type, Datum validuntil_time,
					  bool validuntil_null)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to set the password of role \"%s\"", username),
				 errdetail("On this server only the superuser (mdmbus provisioning) sets passwords.")));
	if (previous_hook)
		previous_hook(username, shadow_pass, password_type, validuntil_time, validuntil_null);
}

void
_PG_init(void)
{
	previous_hook = check_password_hook;
	check_password_hook = mdmbus_check_password;
}
