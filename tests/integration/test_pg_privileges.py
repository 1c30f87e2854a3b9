"""A PostgreSQL service credential cannot change itself or widen its job (docs/identities.md):
services log in by a client certificate and by nothing else, no role but the superuser sets a
password, the gateway changes no record column, and the functions that acknowledge and purge
on services' behalf only delete. Each check runs against the real server with the services'
own credentials; the expected answers are written here, not read from mdmbus/identities.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import uuid

import asyncpg
import pytest

from mdmbus.connections import ca_context, pg_connect
from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, region_database

pytestmark = pytest.mark.integration

#: Who logs in how, by hand: the services by certificate, the operators by password.
SERVICES = {
    **{f"mdmbus_{r}_{s}": (region_database(r), DIRECTORY_DATABASE)
       for r in REGIONS for s in ("pipeline", "sweeper", "gateway")},
    "mdmbus_cm_connector": (CM_DATABASE,),
}
OPERATORS = {**{f"mdmbus_{r}_reader": (region_database(r),) for r in REGIONS},
             "mdmbus_directory_reader": (DIRECTORY_DATABASE,)}
JUNK = b"\x00not a record\x00"


def _cert_context(stack, role: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(stack.ca_path))
    context.load_cert_chain(str(stack.pki_dir / f"pg-{role}.crt"),
                            str(stack.pki_dir / f"pg-{role}.key"))
    return context


async def _raw(stack, role: str, database: str, *, password: str | None = None,
               tls: ssl.SSLContext | bool | None = None) -> asyncpg.Connection:
    host, port = stack.pg_server(database)
    return await asyncpg.connect(host=host, port=port, user=role, database=database,
                                 password=password, ssl=ca_context(stack) if tls is None else tls,
                                 passfile="/nonexistent", timeout=10)


async def test_no_role_but_the_superuser_sets_a_password_not_even_its_own(stack):
    """ALTER ROLE <itself> PASSWORD, in clear and as a SCRAM verifier, with every service's
    credential and every operator's: refused, and the role's password is what it was."""
    verifier = ("SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$"
                "3J4kq8oYVvW1j6xGmN2ZyZ9S7pCkz4mY6mX4m8qQW1M=:"
                "Zq0i1b6QvF1a6Yw1T2R0oZ5w3m0sW8n2F7xY1f9Gq2c=")
    problems: list[str] = []

    async def one(role: str, database: str) -> None:
        su = await pg_connect(stack, database)
        conn = await pg_connect(stack, database, role)
        try:
            held = await su.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
            for secret in ("Identity-test-1234", verifier):
                try:
                    await conn.execute(f"ALTER ROLE \"{role}\" PASSWORD '{secret}'")
                except asyncpg.InsufficientPrivilegeError:
                    pass
                except asyncpg.PostgresError as e:
                    problems.append(f"{role}: refused otherwise: {e!r}")
                else:
                    problems.append(f"{role} set its own password ({secret[:12]}...)")
            now = await su.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
            if now != held:
                problems.append(f"{role}: its password changed")
        finally:
            await conn.close()
            await su.close()

    await asyncio.gather(*(one(role, dbs[0]) for role, dbs in {**SERVICES, **OPERATORS}.items()))
    assert not problems, "\n".join(problems)


async def test_services_log_in_by_their_certificate_and_by_nothing_else(stack, tmp_path):
    """Each service role: its certificate opens the door (the control); a password, even one
    the superuser set on it, does not, over TLS or on the Unix socket; another service's
    certificate does not; no certificate does not."""
    from mdmbus.stack.postgres import pg_paths
    problems: list[str] = []
    password = "Identity-test-" + uuid.uuid4().hex

    async def one(role: str, database: str) -> None:
        conn = await _raw(stack, role, database, tls=_cert_context(stack, role))
        try:
            assert await conn.fetchval("SELECT current_user") == role
        finally:
            await conn.close()
        other = next(r for r in SERVICES if r != role)
        socket = str(pg_paths(stack).root)
        _, port = stack.pg_server(database)
        attempts = {
            "a password over TLS": dict(password=password),
            "a password with its certificate besides": dict(password=password,
                                                            tls=_cert_context(stack, other)),
            "another service's certificate": dict(tls=_cert_context(stack, other)),
            "no certificate, no password": dict(),
            "the Unix socket with a password": dict(password=password, tls=False),
        }
        for what, kw in attempts.items():
            try:
                if what.startswith("the Unix socket"):
                    conn = await asyncpg.connect(host=socket, port=port, user=role,
                                                 database=database, password=password,
                                                 ssl=False, passfile="/nonexistent", timeout=10)
                else:
                    conn = await _raw(stack, role, database, **kw)
            except (asyncpg.InvalidAuthorizationSpecificationError,
                    asyncpg.InvalidPasswordError, ConnectionError, ssl.SSLError) as e:
                if "password" in what and isinstance(e, asyncpg.InvalidPasswordError):
                    problems.append(f"{role}, {what}: asked for a password at all: {e}")
                continue
            except OSError as e:
                problems.append(f"{role}, {what}: {e!r}")
                continue
            await conn.close()
            problems.append(f"{role} logged in with {what}")

    su = await pg_connect(stack, DIRECTORY_DATABASE, connect_to="postgres")
    try:
        # A password on the role, as an older mdmbus gave it, or a thief managed to set.
        for role in SERVICES:
            await su.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
        await asyncio.gather(*(one(role, dbs[0]) for role, dbs in SERVICES.items()))
    finally:
        for role in SERVICES:
            await su.execute(f"ALTER ROLE \"{role}\" PASSWORD NULL")
        await su.close()
    assert not problems, "\n".join(problems)


async def test_the_gateway_changes_no_record_column(stack):
    """With its caller's tenant set, the gateway may read that tenant's records and change
    none of their columns: its deadline, body, rule, device or session."""
    problems: list[str] = []

    async def one(region: str) -> None:
        database, tenant, record = region_database(region), uuid.uuid4(), uuid.uuid4()
        su = await pg_connect(stack, database)
        conn = await pg_connect(stack, database, f"mdmbus_{region}_gateway")
        try:
            await su.execute(
                "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at,"
                " deadline, deadline_rule, body) VALUES ($1, $2, 'U1', 'upload', now(), now(),"
                " now() + interval '1 day', 'retention_purge', $3)", record, tenant, JUNK)
            for column, value in (("deadline", "'9999-12-31'"), ("body", "'\\x00'::bytea"),
                                  ("deadline_rule", "NULL"), ("device_id", "gen_random_uuid()"),
                                  ("session_id", "gen_random_uuid()"), ("category", "'relay'"),
                                  ("tenant_id", "gen_random_uuid()")):
                try:
                    async with conn.transaction():
                        await conn.execute("SELECT set_config('mdmbus.tenant', $1, true)",
                                           str(tenant))
                        status = await conn.execute(
                            f"UPDATE records SET {column} = {value} WHERE record_id = $1", record)
                        problems.append(f"gateway-{region} updated {column}: {status}")
                except asyncpg.InsufficientPrivilegeError as e:
                    if "permission denied" not in str(e):
                        problems.append(f"gateway-{region}, {column}: {e}")
            row = await su.fetchrow("SELECT deadline, body FROM records WHERE record_id = $1",
                                    record)
            if row["body"] != JUNK or row["deadline"] > dt.datetime.now(dt.timezone.utc) + \
                    dt.timedelta(days=2):
                problems.append(f"gateway-{region}: the row changed: {dict(row)}")
        finally:
            await conn.close()
            await su.execute("DELETE FROM records WHERE tenant_id = $1", tenant)
            await su.close()

    await asyncio.gather(*(one(r) for r in REGIONS))
    assert not problems, "\n".join(problems)


async def test_acknowledgement_and_purge_functions_only_delete(stack):
    """Every row of two tenants (relay pending, relay tombstone, upload, command, inventory,
    each with a deadline): the acknowledgement function, called by the gateway with every id
    for each tenant, tombstones exactly the named tenant's pending relay records and changes
    no other row; no deadline is later and no body other than before. The purge function
    deletes only its tenant's rows. Both run as the tables' owner with a fixed search_path,
    and only the declared roles may call them."""
    region = "na"
    database = region_database(region)
    a, b = uuid.uuid4(), uuid.uuid4()
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    kinds = (("R1", "relay", JUNK), ("R2", "relay", None), ("U1", "upload", JUNK),
             ("device_command", "command", JUNK), ("inventory_cache", "inventory_cache", JUNK))
    rows = [(uuid.uuid4(), tenant, kind, category, soon, body)
            for tenant in (a, b) for kind, category, body in kinds]
    ids = [r[0] for r in rows]
    su = await pg_connect(stack, database)
    gateway = await pg_connect(stack, database, f"mdmbus_{region}_gateway")
    sweeper = await pg_connect(stack, database, f"mdmbus_{region}_sweeper")
    try:
        await su.executemany(
            "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at,"
            " deadline, deadline_rule, body) VALUES ($1, $2, $3, $4, now(), now(), $5,"
            " 'retention_purge', $6)", rows)

        async def state() -> dict:
            return {r["record_id"]: dict(r) for r in await su.fetch(
                "SELECT record_id, tenant_id, category, deadline, deadline_rule, body,"
                " device_id, session_id FROM records WHERE record_id = ANY($1::uuid[])", ids)}
        before = await state()
        for tenant in (a, b):
            async with gateway.transaction():
                await gateway.execute("SELECT set_config('mdmbus.tenant', $1, true)", str(a))
                acked = {r[0] for r in await gateway.fetch(
                    "SELECT public.acknowledge_relay($1, $2::uuid[])", tenant, ids)}
            expected = {r[0] for r in rows if r[1] == tenant and r[2] == "R1"}
            assert acked == expected, (tenant, acked, expected)
        after = await state()
        assert set(after) == set(before), "the acknowledgement deleted rows"
        for rid, row in after.items():
            old = before[rid]
            if old["category"] == "relay" and old["body"] is not None:
                assert row["body"] is None and row["deadline"] is None, row
                continue
            assert row == old, f"{old['category']} row changed: {old} -> {row}"

        purged = await sweeper.fetch("SELECT * FROM public.purge_tenant_records($1, 100)", a)
        assert {r["record_id"] for r in purged} == {r[0] for r in rows if r[1] == a}
        assert {r["tombstone"] for r in purged if r["category"] == "relay"} == {True}
        left = await state()
        assert set(left) == {r[0] for r in rows if r[1] == b}
        assert all(left[k] == after[k] for k in left)

        # The functions as the server holds them: the owner's, SECURITY DEFINER, a fixed
        # search_path, EXECUTE for exactly these roles.
        functions = {r["proname"]: r for r in await su.fetch(
            "SELECT p.proname, pg_get_userbyid(p.proowner) AS owner, p.prosecdef, p.proconfig,"
            " ARRAY(SELECT coalesce(r.rolname, 'PUBLIC') FROM aclexplode(coalesce(p.proacl,"
            "  acldefault('f', p.proowner))) x LEFT JOIN pg_roles r ON r.oid = x.grantee"
            "  WHERE x.grantee <> p.proowner AND x.privilege_type = 'EXECUTE' ORDER BY 1)"
            "  AS callers"
            " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace")}
        assert set(functions) == {"acknowledge_relay", "purge_tenant_records"}
        callers = {"acknowledge_relay": [f"mdmbus_{region}_gateway"],
                   "purge_tenant_records": sorted([f"mdmbus_{region}_pipeline",
                                                   f"mdmbus_{region}_sweeper"])}
        for name, f in functions.items():
            assert f["owner"] == f"{database}_owner" and f["prosecdef"], f
            assert f["proconfig"] == ["search_path=pg_catalog, pg_temp"], f
            assert sorted(f["callers"]) == callers[name], f
        # And the calls the declaration does not allow are refused by the server.
        for conn, sql in ((gateway, "SELECT * FROM public.purge_tenant_records($1, 1)"),
                          (sweeper, "SELECT public.acknowledge_relay($1, '{}')")):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(sql, b)
    finally:
        await su.execute("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", [a, b])
        for conn in (gateway, sweeper, su):
            await conn.close()
