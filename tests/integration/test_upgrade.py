"""A store made by the previous release migrates in place when `mdmbus stack up` (or `mdmbus
provision`) applies the current schema: nothing stored is lost, and afterwards a record is
(tenant, record id), so another tenant's record under the same id is stored beside it.

The oracle is the previous release's own DDL (tests/integration/data/*_9997378.sql, copied
from that commit), not the current schema files: a scratch database is made with it on the
test stack's server, given rows, and then gets the current schema files in the order
provisioning applies them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from importlib.resources import files
from pathlib import Path

import asyncpg
import pytest

from mdmbus.connections import pg_connect
from mdmbus.regions import CM_DATABASE, region_database
from mdmbus.services.stores.schema import schema_files

pytestmark = pytest.mark.integration

OLD = Path(__file__).parent / "data"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


async def _scratch(stack, old_ddl: str):
    name = f"mdmbus_upgrade_{uuid.uuid4().hex[:10]}"
    admin = await pg_connect(stack, region_database("eu"), connect_to="postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await pg_connect(stack, region_database("eu"), connect_to=name)
    await conn.execute(old_ddl)
    return admin, conn, name


async def _drop(admin: asyncpg.Connection, conn: asyncpg.Connection, name: str) -> None:
    await conn.close()
    await admin.execute(f'DROP DATABASE "{name}"')
    await admin.close()


async def _apply_current(conn: asyncpg.Connection, database: str) -> None:
    for name in schema_files(database):
        await conn.execute(files("mdmbus.services.stores").joinpath(name).read_text())


async def _key(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r[0] for r in await conn.fetch(
        "SELECT a.attname FROM pg_constraint c JOIN LATERAL unnest(c.conkey)"
        " WITH ORDINALITY AS k(n, i) ON true"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
        " WHERE c.conrelid = $1::regclass AND c.contype = 'p' ORDER BY k.i", table)]


async def test_a_region_store_of_the_previous_release_keeps_its_rows_and_keys_by_tenant(stack):
    admin, conn, name = await _scratch(stack, (OLD / "region_schema_9997378.sql").read_text())
    try:
        a, b, rid, device = (uuid.uuid4() for _ in range(4))
        await conn.execute(
            "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at,"
            " body) VALUES ($1, $2, 'U12', 'upload', $3, $3, 'old body')", rid, a, NOW)
        await conn.execute(
            "INSERT INTO device_sessions (device_id, tenant_id, session_id, expires_at)"
            " VALUES ($1, $2, $3, $4)", device, a, uuid.uuid4(), NOW)
        await _apply_current(conn, region_database("eu"))
        await _apply_current(conn, region_database("eu"))  # idempotent, as at every stack up

        assert await _key(conn, "records") == ["tenant_id", "record_id"]
        assert await _key(conn, "device_sessions") == ["tenant_id", "device_id"]
        assert await conn.fetchval("SELECT body FROM records WHERE tenant_id = $1"
                                   " AND record_id = $2", a, rid) == b"old body"
        # Another tenant's record and device under the same ids: stored beside them.
        await conn.execute(
            "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at,"
            " body) VALUES ($1, $2, 'U12', 'upload', $3, $3, 'new body')", rid, b, NOW)
        await conn.execute(
            "INSERT INTO device_sessions (device_id, tenant_id, session_id, expires_at)"
            " VALUES ($1, $2, $3, $4)", device, b, uuid.uuid4(), NOW)
        assert await conn.fetchval("SELECT count(*) FROM records WHERE record_id = $1", rid) == 2
        assert await conn.fetchval("SELECT count(*) FROM device_sessions") == 2
    finally:
        await _drop(admin, conn, name)


async def test_cms_database_of_the_previous_release_keeps_its_rows_and_keys_by_tenant(stack):
    admin, conn, name = await _scratch(stack, (OLD / "cm_schema_9997378.sql").read_text())
    try:
        a, b, rid = (uuid.uuid4() for _ in range(3))
        await conn.execute("INSERT INTO relayed_records (record_id, tenant_id, kind, event_time,"
                           " body) VALUES ($1, $2, 'R1', $3, 'a')", rid, a, NOW)
        await _apply_current(conn, CM_DATABASE)
        assert await _key(conn, "relayed_records") == ["tenant_id", "record_id"]
        await conn.execute("INSERT INTO relayed_records (record_id, tenant_id, kind, event_time,"
                           " body) VALUES ($1, $2, 'R1', $3, 'b')", rid, b, NOW)
        assert sorted(r[0] for r in await conn.fetch(
            "SELECT body FROM relayed_records WHERE record_id = $1", rid)) == [b"a", b"b"]
    finally:
        await _drop(admin, conn, name)
