"""The PostgreSQL side of mdmbus/identities.py on the servers: login roles with their
passwords, CONNECT on their databases only, exactly the declared table, column and sequence
privileges, and the row-level security policies. Provisioning applies it (``sync``); the
``read_*`` functions read what a server holds, for ``sync``'s difference and for the test that
holds the servers to the declaration.

Rights are changed by difference (grant what is missing, revoke what is not declared), so
provisioning a running system does not take a right away for a moment. Policies are replaced
in one transaction per table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import asyncpg

from mdmbus.identities import (CERTIFICATE, Grant, PgRole, Policy, TABLES,
                               pg_database_privileges, pg_functions, pg_grants, owner_of,
                               pg_policies, pg_roles, pg_sequences, policy_name)
from mdmbus.regions import all_databases, database_kind
from mdmbus.settings import Settings

__all__ = ["sync", "read_grants", "read_sequence_grants", "read_function_grants",
           "read_policies", "read_connect", "read_roles", "ensure_owner", "MAINTENANCE",
           "TEMPLATE"]

#: The server's maintenance database and the template new databases copy: no service
#: connects to either (template0 accepts no connection at all).
MAINTENANCE = "postgres"
TEMPLATE = "template1"

_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def read_roles(conn: asyncpg.Connection, names: Iterable[str]) -> dict[str, dict]:
    """Attributes of the roles among ``names`` that exist."""
    rows = await conn.fetch(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
        " rolbypassrls, rolinherit FROM pg_roles WHERE rolname = ANY($1::text[])", list(names))
    return {r["rolname"]: dict(r) for r in rows}


async def read_connect(conn: asyncpg.Connection) -> dict[str, dict[str, set[str]]]:
    """database -> grantee ("PUBLIC" or a role) -> its database privileges (CONNECT, TEMPORARY,
    CREATE), for every database but the templates."""
    rows = await conn.fetch(
        "SELECT d.datname, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
        " FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE d.datallowconn AND a.grantee <> d.datdba")
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        out[r["datname"]][r["grantee"]].add(r["privilege_type"])
    return out


async def read_grants(conn: asyncpg.Connection, database: str) -> set[Grant]:
    """Every table and column privilege in the connection's database held by a role other than
    the table's owner (PUBLIC included, as role "PUBLIC")."""
    table_rows = await conn.fetch(
        "SELECT c.relname, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
        " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')"
        " AND a.grantee <> c.relowner")
    column_rows = await conn.fetch(
        "SELECT c.relname, at.attname, coalesce(r.rolname, 'PUBLIC') AS grantee,"
        " a.privilege_type"
        " FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(at.attacl) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE n.nspname = 'public' AND at.attacl IS NOT NULL AND at.attnum > 0"
        " AND NOT at.attisdropped")
    out = {Grant(database, r["relname"], r["grantee"], r["privilege_type"]) for r in table_rows}
    columns: dict[tuple, set[str]] = defaultdict(set)
    for r in column_rows:
        columns[(r["relname"], r["grantee"], r["privilege_type"])].add(r["attname"])
    for (table, grantee, privilege), names in columns.items():
        out.add(Grant(database, table, grantee, privilege, tuple(sorted(names))))
    return out


async def read_sequence_grants(conn: asyncpg.Connection, database: str) -> set[Grant]:
    rows = await conn.fetch(
        "SELECT c.relname, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
        " aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE n.nspname = 'public' AND c.relkind = 'S' AND a.grantee <> c.relowner")
    return {Grant(database, r["relname"], r["grantee"], r["privilege_type"]) for r in rows}


async def read_function_grants(conn: asyncpg.Connection, database: str) -> set[Grant]:
    """EXECUTE on the functions of the public schema, held by anyone but their owner (PUBLIC
    included: a new function is PUBLIC's to call until revoked)."""
    rows = await conn.fetch(
        "SELECT p.proname, coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,"
        " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        " LEFT JOIN pg_roles r ON r.oid = a.grantee"
        " WHERE n.nspname = 'public' AND a.grantee <> p.proowner")
    return {Grant(database, r["proname"], r["grantee"], r["privilege_type"]) for r in rows}


async def read_policies(conn: asyncpg.Connection) -> dict[str, dict]:
    """Row-level security as the server holds it: table -> {"enabled", "forced", "policies":
    {policy name: (roles, command, permissive)}}, for every table of the public schema."""
    tables = await conn.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")
    out = {t["relname"]: {"enabled": t["relrowsecurity"], "forced": t["relforcerowsecurity"],
                          "policies": {}} for t in tables}
    for p in await conn.fetch("SELECT tablename, policyname, roles, cmd, permissive"
                              " FROM pg_policies WHERE schemaname = 'public'"):
        out[p["tablename"]]["policies"][p["policyname"]] = (
            tuple(sorted(p["roles"])), p["cmd"], p["permissive"])
    return out


def _grant_sql(g: Grant, verb: str) -> str:
    columns = f" ({', '.join(_ident(c) for c in g.columns)})" if g.columns else ""
    target = "PUBLIC" if g.role == "PUBLIC" else _ident(g.role)
    preposition = "TO" if verb == "GRANT" else "FROM"
    return f"{verb} {g.privilege}{columns} ON {_ident(g.table)} {preposition} {target}"


async def _sync_roles(conn: asyncpg.Connection, settings: Settings, roles: list[PgRole]) -> int:
    """Creates the missing login roles; sets every role's attributes and password. A role
    that logs in by certificate has no password at all (PASSWORD NULL): none it could set
    itself would open a door either (pg_hba.conf accepts only its certificate)."""
    existing = await read_roles(conn, [r.name for r in roles])
    for role in roles:
        if role.name not in existing:
            await conn.execute(f"CREATE ROLE {_ident(role.name)}")
        password = "NULL" if role.login == CERTIFICATE else \
            _literal(settings.password("pg", role.name))
        # A service role owns nothing, creates nothing and is subject to row-level security.
        await conn.execute(
            f"ALTER ROLE {_ident(role.name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
            f" NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 64"
            f" PASSWORD {password}")
    return len(roles) - len(existing)


async def _sync_database(conn: asyncpg.Connection, database: str) -> tuple[int, int]:
    """The declared database privileges (CONNECT, TEMPORARY) and nothing else, PUBLIC's
    included; returns (granted, revoked)."""
    granted = revoked = 0
    want: dict[str, set[str]] = defaultdict(set)
    for db, role, privilege in pg_database_privileges():
        if db == database:
            want[role].add(privilege)
    held = (await read_connect(conn)).get(database, {})
    for grantee, privileges in held.items():
        extra = privileges - want.get(grantee, set())
        if extra:
            target = "PUBLIC" if grantee == "PUBLIC" else _ident(grantee)
            await conn.execute(f"REVOKE {', '.join(sorted(extra))} ON DATABASE "
                               f"{_ident(database)} FROM {target}")
            revoked += len(extra)
    for role, privileges in sorted(want.items()):
        missing = privileges - held.get(role, set())
        if missing:
            await conn.execute(f"GRANT {', '.join(sorted(missing))} ON DATABASE "
                               f"{_ident(database)} TO {_ident(role)}")
            granted += len(missing)
    return granted, revoked


async def _sync_tables(conn: asyncpg.Connection, database: str) -> tuple[int, int]:
    """The table, column and sequence privileges of ``database``, by difference."""
    want = {g for g in pg_grants() if g.database == database}
    have = await read_grants(conn, database)
    want_seq = {g for g in pg_sequences() if g.database == database}
    have_seq = await read_sequence_grants(conn, database)
    revoked = granted = 0
    async with conn.transaction():
        for g in sorted(have - want):
            await conn.execute(_grant_sql(g, "REVOKE"))
            revoked += 1
        for g in sorted(want - have):
            await conn.execute(_grant_sql(g, "GRANT"))
            granted += 1
        for g in sorted(have_seq - want_seq):
            await conn.execute(f"REVOKE {g.privilege} ON SEQUENCE {_ident(g.table)} FROM "
                               f"{'PUBLIC' if g.role == 'PUBLIC' else _ident(g.role)}")
            revoked += 1
        for g in sorted(want_seq - have_seq):
            await conn.execute(f"GRANT {g.privilege} ON SEQUENCE {_ident(g.table)} TO "
                               f"{_ident(g.role)}")
            granted += 1
        want_fn = {g for g in pg_functions() if g.database == database}
        have_fn = await read_function_grants(conn, database)
        for g in sorted(have_fn - want_fn):
            await conn.execute(f"REVOKE {g.privilege} ON FUNCTION {_ident(g.table)} FROM "
                               f"{'PUBLIC' if g.role == 'PUBLIC' else _ident(g.role)}")
            revoked += 1
        for g in sorted(want_fn - have_fn):
            await conn.execute(f"GRANT {g.privilege} ON FUNCTION {_ident(g.table)} TO "
                               f"{_ident(g.role)}")
            granted += 1
        # Nobody but the owner creates in the schema; everyone may use it (to reach the
        # tables granted above): whatever else anyone was granted there is revoked.
        for row in await conn.fetch(
                "SELECT coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
                " FROM pg_namespace n,"
                " aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
                " LEFT JOIN pg_roles r ON r.oid = a.grantee"
                " WHERE n.nspname = 'public' AND a.grantee <> n.nspowner"
                " AND a.privilege_type <> 'USAGE'"):
            target = "PUBLIC" if row["grantee"] == "PUBLIC" else _ident(row["grantee"])
            await conn.execute(f"REVOKE {row['privilege_type']} ON SCHEMA public FROM {target}")
            revoked += 1
    return granted, revoked


async def _sync_policies(conn: asyncpg.Connection, database: str) -> int:
    """Row-level security: a table with declared policies has it enabled and forced, and
    exactly those policies (a role granted such a table without a policy of its own would see
    none of its rows: mdmbus/identities.py declares one for each); other tables have none."""
    declared: dict[str, list[Policy]] = defaultdict(list)
    for p in pg_policies():
        if p.database == database:
            declared[p.table].append(p)
    held = await read_policies(conn)
    comments = {r["relname"]: r["comment"] for r in await conn.fetch(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') AS comment FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'")}
    changed = 0
    for table in TABLES[database_kind(database)]:
        state = held.get(table, {"enabled": False, "forced": False, "policies": {}})
        want = {policy_name(p): ((p.role,), p.command, "PERMISSIVE") for p in declared[table]}
        if not want:
            if state["enabled"] or state["policies"]:
                async with conn.transaction():
                    for name in state["policies"]:
                        await conn.execute(f"DROP POLICY {_ident(name)} ON {_ident(table)}")
                    await conn.execute(f"ALTER TABLE {_ident(table)} NO FORCE ROW LEVEL SECURITY")
                    await conn.execute(f"ALTER TABLE {_ident(table)} DISABLE ROW LEVEL SECURITY")
                changed += 1
            continue
        if state["enabled"] and state["forced"] and state["policies"] == want \
                and comments.get(table) == _policy_digest(declared[table]):
            continue
        async with conn.transaction():
            for name in state["policies"]:
                await conn.execute(f"DROP POLICY {_ident(name)} ON {_ident(table)}")
            for p in declared[table]:
                check = "" if p.command in ("SELECT", "DELETE") else \
                    f" WITH CHECK ({p.check or p.using})"
                using = "" if p.command == "INSERT" else f" USING ({p.using})"
                await conn.execute(
                    f"CREATE POLICY {_ident(policy_name(p))} ON {_ident(table)}"
                    f" FOR {p.command} TO {_ident(p.role)}{using}{check}")
            await conn.execute(f"ALTER TABLE {_ident(table)} ENABLE ROW LEVEL SECURITY")
            await conn.execute(f"ALTER TABLE {_ident(table)} FORCE ROW LEVEL SECURITY")
            # What the policies say, kept with them: a changed declaration is applied at the
            # next provisioning even when names, roles and commands stay the same.
            await conn.execute(f"COMMENT ON TABLE {_ident(table)} IS "
                               f"{_literal(_policy_digest(declared[table]))}")
        changed += 1
    return changed


def _policy_digest(policies: list[Policy]) -> str:
    import hashlib
    text = "\n".join(repr(p) for p in sorted(policies))
    return "mdmbus row-level security " + hashlib.sha256(text.encode()).hexdigest()[:16]


async def ensure_owner(conn: asyncpg.Connection, database: str) -> str:
    """The owner role of the connection's database: created if missing (it cannot log in,
    nor bypass anything), made the owner of the database and of every table and sequence in
    its public schema (a cluster of an older mdmbus had them owned by the superuser); returns
    its name."""
    owner = owner_of(database)
    if not await read_roles(conn, [owner]):
        await conn.execute(f"CREATE ROLE {_ident(owner)}")
    await conn.execute(f"ALTER ROLE {_ident(owner)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                       f" NOREPLICATION NOBYPASSRLS")
    await conn.execute(f"ALTER DATABASE {_ident(database)} OWNER TO {_ident(owner)}")
    for row in await conn.fetch(
            "SELECT c.relname, c.relkind FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'S')"
            " AND pg_get_userbyid(c.relowner) <> $1"
            # a sequence owned by a column follows its table
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
            "   AND d.deptype = 'a' AND c.relkind = 'S')", owner):
        await conn.execute(f"ALTER TABLE {_ident(row['relname'])} OWNER TO {_ident(owner)}")
    return owner


async def sync(settings: Settings) -> str:
    """Applies every identity's PostgreSQL rights on every server; returns a summary line."""
    from mdmbus.connections import pg_connect
    roles = pg_roles()
    servers: dict[tuple[str, int], list[str]] = defaultdict(list)
    for database in all_databases():
        servers[settings.pg_server(database)].append(database)
    created = granted = revoked = policies = 0
    for databases in servers.values():
        conn = await pg_connect(settings, databases[0], connect_to=MAINTENANCE)
        try:
            here = [r for r in roles if set(r.databases) & set(databases)]
            created += await _sync_roles(conn, settings, here)
            for database in [*databases, MAINTENANCE, TEMPLATE]:
                g, r = await _sync_database(conn, database)
                granted, revoked = granted + g, revoked + r
        finally:
            await conn.close()
        for database in databases:
            conn = await pg_connect(settings, database)
            try:
                g, r = await _sync_tables(conn, database)
                granted, revoked = granted + g, revoked + r
                policies += await _sync_policies(conn, database)
            finally:
                await conn.close()
    if not (created or granted or revoked or policies):
        return f"{len(roles)} roles, their rights as declared (no change)"
    return (f"{len(roles)} roles ({created} new), {granted} privileges granted, {revoked} "
            f"revoked, row-level security set on {policies} tables")
