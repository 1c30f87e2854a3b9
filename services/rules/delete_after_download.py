"""Rule 2, delete after download: a relay record stays in the cloud store until CM has
durably stored it and acknowledged it, however long CM is offline, and is deleted at once
after. CM downloads its tenant's pending records through the gateway and acknowledges them
there (services/gateway/); an acknowledgement deletes only relay records of the caller's own
tenant still pending for CM, never an upload, a command or an inventory cache entry (the
connector acknowledges what it has committed to CM: services/connector/).

The record's id stays as a tombstone (its tenant and id; body and wrapped data key NULL), so a
replay of the relay topic or a re-sent record cannot store it again; the tenant's purge deletes
the tombstone."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Sequence

import asyncpg

from mdmbus.categories import Category
from mdmbus.services.rules.audit import DELETE_AFTER_DOWNLOAD, Deletion, audit
from mdmbus.services.stores.sealing import open_record
from mdmbus.services.stores.pools import Connection

__all__ = ["pending", "pending_summary", "acknowledge", "AckOutcome"]


async def pending(conn: Connection | asyncpg.Pool, tenant_id: uuid.UUID,
                  limit: int) -> list[dict]:
    """The tenant's relay records not downloaded and acknowledged yet, oldest first, each
    body opened (record_id, kind, event_time, body)."""
    rows = await conn.fetch(
        "SELECT record_id, kind, event_time, body, tenant_id, wrapped_key, kek_id FROM records"
        " WHERE tenant_id = $1 AND category = 'relay' AND has_body"
        " ORDER BY stored_at_real, record_id LIMIT $2", tenant_id, limit)
    return [{"record_id": r["record_id"], "kind": r["kind"], "event_time": r["event_time"],
             "body": open_record(r)} for r in rows]


async def pending_summary(conn: Connection | asyncpg.Pool,
                          tenant_id: uuid.UUID | None = None) -> tuple[int, dt.datetime | None]:
    """(records pending, when the oldest was stored, real time) for a tenant, or for the whole
    store when ``tenant_id`` is None."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(stored_at_real) AS oldest FROM records"
        " WHERE category = 'relay' AND has_body AND ($1::uuid IS NULL OR tenant_id = $1)",
        tenant_id)
    assert row is not None  # an aggregate without GROUP BY: one row
    return row["n"], row["oldest"]


@dataclass
class AckOutcome:
    #: Deleted now.
    deleted: list[uuid.UUID] = field(default_factory=list)
    #: Acknowledged before: deleted already, nothing to do (a repeated acknowledgement).
    already: list[uuid.UUID] = field(default_factory=list)
    #: Not a relay record of this tenant: nothing deleted.
    unknown: list[uuid.UUID] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)


async def acknowledge(conn: Connection, region: str, tenant_id: uuid.UUID,
                      record_ids: Sequence[uuid.UUID], now: dt.datetime,
                      lag_s: float = 0.0) -> AckOutcome:
    """Deletes each acknowledged relay record of ``tenant_id`` once, with its audit row, in one
    transaction; ids of another tenant, or unknown ids, delete nothing."""
    ids = sorted(set(record_ids))
    outcome = AckOutcome()
    if not ids:
        return outcome
    async with conn.transaction():
        # The store's function (services/stores/region_functions.sql): the caller holds no
        # UPDATE on records, and the function turns only this tenant's pending relay records
        # into tombstones, whatever ids it is given.
        deleted = await conn.fetch("SELECT public.acknowledge_relay($2, $1::uuid[]) AS record_id",
                                   ids, tenant_id)
        outcome.deleted = sorted(r["record_id"] for r in deleted)
        rest = sorted(set(ids) - set(outcome.deleted))
        if rest:
            known = await conn.fetch(
                "SELECT record_id FROM records WHERE record_id = ANY($1::uuid[])"
                " AND tenant_id = $2 AND category = 'relay' AND NOT has_body", rest, tenant_id)
            outcome.already = sorted(r["record_id"] for r in known)
            outcome.unknown = sorted(set(rest) - set(outcome.already))
        if outcome.deleted:
            outcome.deletions = [Deletion(DELETE_AFTER_DOWNLOAD, region, Category.RELAY,
                                          outcome.deleted, [lag_s] * len(outcome.deleted),
                                          tenant_id)]
        await audit(conn, now, outcome.deletions)
    return outcome
