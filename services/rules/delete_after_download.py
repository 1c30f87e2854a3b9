"""Rule 2, delete after download: once CM has durably stored a relay record and acknowledged
it, the cloud copy is deleted. Not before (the ack is sent after CM's commit) and at once
after (in the transaction that handles the ack).

The record's id stays as a tombstone (body NULL), so a replay of the relay topic cannot store
the record again; an ack that arrives before the cloud copy leaves the tombstone first, and the
primary key makes the two writes wait for each other instead of racing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Sequence

import asyncpg

from mdmbus.services.rules.audit import DELETE_AFTER_DOWNLOAD, Deletion, audit

__all__ = ["apply_acks"]


async def apply_acks(conn: asyncpg.Connection, region: str, now: dt.datetime,
                     acks: Sequence[tuple[uuid.UUID, uuid.UUID, float]]) -> list[Deletion]:
    """``acks``: (relay record id, tenant id, real seconds since CM's commit)."""
    if not acks:
        return []
    ids = [a[0] for a in acks]
    lag_of = {a[0]: a[2] for a in acks}
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at)"
            " SELECT a.id, a.tenant, 'acknowledged', 'relay', $3, $3"
            " FROM unnest($1::uuid[], $2::uuid[]) AS a(id, tenant)"
            # In record_id order, as write_records inserts: two writers that lock the same ids
            # in one order wait for each other; in two orders they deadlock.
            " ORDER BY a.id"
            " ON CONFLICT (record_id) DO NOTHING",
            ids, [a[1] for a in acks], now)
        rows = await conn.fetch(
            "UPDATE records SET body = NULL, device_id = NULL, deadline = NULL"
            " WHERE record_id = ANY($1::uuid[]) AND body IS NOT NULL AND category = 'relay'"
            " RETURNING record_id, tenant_id", ids)
        deletions = [Deletion(DELETE_AFTER_DOWNLOAD, region, "relay", [r["record_id"] for r in rows],
                              [lag_of[r["record_id"]] for r in rows])] if rows else []
        await audit(conn, now, deletions)
    return deletions
