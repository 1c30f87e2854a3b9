"""Rules that change the same rows at once wait for each other and lose nothing.

A record write (``write_records``) and an acknowledgement (``apply_acks``) can both insert the
same relay record id at once (the ack may overtake the record). PostgreSQL breaks a lock cycle
only after ``deadlock_timeout`` (1 s) by failing one transaction: no loss (the batch is
retried), but a second of delay on delete-after-download. Both insert in record_id order.

A purge that waits for a row another transaction is updating must still delete it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from mdmbus.regions import region_database
from mdmbus.services.rules.delete_after_download import apply_acks
from mdmbus.services.rules.retention import purge_tenant
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

_INSERT_RELAY = (
    "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at, body)"
    " VALUES ($1, $2, 'R1', 'relay', $3, $3, '\\x01'::bytea)")


async def _waits_for_a_lock(watcher: asyncpg.Connection, pid: int) -> bool:
    return await watcher.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid) or False


async def test_acks_in_any_order_wait_for_a_record_writer_instead_of_deadlocking(stack):
    dsn = stack.pg_dsn(region_database("eu"))
    writer, acker, watcher = [await asyncpg.connect(dsn) for _ in range(3)]
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])
    tenant = uuid.uuid4()
    now = dt.datetime.now(dt.timezone.utc)
    try:
        # The writer holds the lower id, as write_records (ORDER BY record_id) would first.
        tx = writer.transaction()
        await tx.start()
        await writer.execute(_INSERT_RELAY, first, tenant, now)
        # Acks arrive in the other order. In that order the acker would take `second`, then
        # wait for `first`, while the writer waits for `second`: a cycle.
        acking = asyncio.create_task(apply_acks(
            acker, "eu", now, [(second, tenant, 0.5), (first, tenant, 0.5)]))
        await wait_for(lambda: _waits_for_a_lock(watcher, acker.get_server_pid()), 10,
                       "the acknowledgement to wait for the writer's uncommitted row")
        await writer.execute(_INSERT_RELAY, second, tenant, now)  # a cycle fails here or there
        await tx.commit()
        deletions = await asyncio.wait_for(acking, 10)

        assert sorted(rid for d in deletions for rid in d.record_ids) == [first, second]
        bodies = await watcher.fetch("SELECT body FROM records WHERE record_id = ANY($1::uuid[])",
                                     [first, second])
        assert [r["body"] for r in bodies] == [None, None], "both cloud copies deleted"
    finally:
        await watcher.execute("DELETE FROM records WHERE record_id = ANY($1::uuid[])",
                              [first, second])
        for conn in (writer, acker, watcher):
            await conn.close()


async def test_a_purge_deletes_rows_updated_while_it_waited_for_them(stack):
    """The purge deletes by ctid; a row updated meanwhile has a new version its DELETE's
    snapshot cannot see. It must notice and go on, not call the tenant done."""
    dsn = stack.pg_dsn(region_database("eu"))
    writer, purger, watcher = [await asyncpg.connect(dsn) for _ in range(3)]
    tenant = uuid.uuid4()
    ids = sorted(uuid.uuid4() for _ in range(3))
    now = dt.datetime.now(dt.timezone.utc)
    try:
        await watcher.execute(
            "INSERT INTO tenants (tenant_id, country, region, onboarded_at)"
            " VALUES ($1, 'DE', 'eu', $2)", tenant, now)
        for rid in ids:
            await watcher.execute(_INSERT_RELAY, rid, tenant, now)
        tx = writer.transaction()
        await tx.start()
        # e.g. apply_acks deleting a relay record's body while the tenant is being purged
        await writer.execute("UPDATE records SET body = NULL WHERE record_id = $1", ids[1])
        purging = asyncio.create_task(purge_tenant(purger, "eu", tenant, now,
                                                   "deletion_request", batch=100))
        await wait_for(lambda: _waits_for_a_lock(watcher, purger.get_server_pid()), 10,
                       "the purge to wait for the row being updated")
        await tx.commit()
        await asyncio.wait_for(purging, 10)

        left = await watcher.fetchval("SELECT count(*) FROM records WHERE tenant_id = $1", tenant)
        assert left == 0, f"{left} row(s) of the purged tenant left behind"
        assert await watcher.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = $1",
                                      tenant) == 0
    finally:
        await watcher.execute("DELETE FROM records WHERE tenant_id = $1", tenant)
        await watcher.execute("DELETE FROM tenants WHERE tenant_id = $1", tenant)
        await watcher.execute("DELETE FROM purged_tenants WHERE tenant_id = $1", tenant)
        for conn in (writer, purger, watcher):
            await conn.close()
