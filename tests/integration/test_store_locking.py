"""Writers of the same record ids take their locks in one order, so they wait, not deadlock.

A record write (``write_records``) and an acknowledgement (``apply_acks``) can both insert the
same relay record id at once (the ack may overtake the record). PostgreSQL breaks a lock cycle
only after ``deadlock_timeout`` (1 s) by failing one transaction: no loss (the batch is
retried), but a second of delay on delete-after-download. Both insert in record_id order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from mdmbus.regions import region_database
from services.rules.delete_after_download import apply_acks
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
