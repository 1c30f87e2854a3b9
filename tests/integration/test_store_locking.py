"""Rules that change the same rows at once wait for each other and lose nothing.

Two acknowledgements of the same relay records can arrive at once (a connector retrying, two
connector instances), in any order of their ids: the second waits for the first and deletes
nothing twice. Every writer of several rows locks them in record_id order; where a lock cycle
still happens, PostgreSQL aborts one transaction, which is retried (DeadlockDetectedError is
one of services/stores/retry.py's STORE_ERRORS).

A purge that waits for a row another transaction is updating must still delete it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from mdmbus.connections import pg_connect
from mdmbus.regions import region_database
from mdmbus.services.rules.delete_after_download import acknowledge
from mdmbus.services.rules.retention import purge_tenant
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

_INSERT_RELAY = (
    "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at, body)"
    " VALUES ($1, $2, 'R1', 'relay', $3, $3, '\\x01'::bytea)")


async def _waits_for_a_lock(watcher: asyncpg.Connection, pid: int) -> bool:
    return await watcher.fetchval(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid) or False


async def test_concurrent_acknowledgements_wait_for_each_other_and_delete_once(stack):
    holder, acker, watcher = [await pg_connect(stack, region_database("eu")) for _ in range(3)]
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])
    tenant = uuid.uuid4()
    now = dt.datetime.now(dt.timezone.utc)
    try:
        for rid in (first, second):
            await watcher.execute(_INSERT_RELAY, rid, tenant, now)
        # The first acknowledgement holds the lower id (and waits, in the open transaction,
        # as a slow one would before it takes the higher).
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM records WHERE record_id = $1 FOR UPDATE", first)
        # The second names them the other way round. Locking in that order it would take
        # `second`, then wait for `first`, while the first waits for `second`: a cycle.
        acking = asyncio.create_task(acknowledge(acker, "eu", tenant, [second, first], now))
        await wait_for(lambda: _waits_for_a_lock(watcher, acker.get_server_pid()), 10,
                       "the second acknowledgement to wait for the first")
        await holder.execute("SELECT 1 FROM records WHERE record_id = $1 FOR UPDATE", second)
        await tx.commit()
        outcome = await asyncio.wait_for(acking, 10)

        assert outcome.deleted == [first, second] and not outcome.unknown
        assert [d.tenant_id for d in outcome.deletions] == [tenant], "audited with its tenant"
        bodies = await watcher.fetch("SELECT body FROM records WHERE record_id = ANY($1::uuid[])",
                                     [first, second])
        assert [r["body"] for r in bodies] == [None, None], "both cloud copies deleted"
        again = await acknowledge(acker, "eu", tenant, [first, second], now)
        assert (again.deleted, again.already) == ([], [first, second]), "deleted once"
    finally:
        await watcher.execute("DELETE FROM records WHERE record_id = ANY($1::uuid[])",
                              [first, second])
        await watcher.execute("DELETE FROM deletion_audit WHERE tenant_id = $1", tenant)
        for conn in (holder, acker, watcher):
            await conn.close()


async def test_a_purge_deletes_rows_updated_while_it_waited_for_them(stack):
    """The purge deletes by ctid; a row updated meanwhile has a new version its DELETE's
    snapshot cannot see. It must notice and go on, not call the tenant done."""
    writer, purger, watcher = [await pg_connect(stack, region_database("eu")) for _ in range(3)]
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
        # e.g. an acknowledgement deleting a relay record's body while the tenant is purged
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
