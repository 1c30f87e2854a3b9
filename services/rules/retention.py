"""Rule 4, retention: a subscription that ends (not renewed, expired, or cancelled without a
deletion request) puts the tenant into 90 days of read-only retention; 30 days after that every
row of the tenant is deleted. A cancellation with a deletion request deletes at once.

Read-only is enforced by the store: writes join on ``tenants.state = 'active'``
(services/stores/records.py), so a write after the change is refused whatever a processor's
cache says; reads and exports go on until the purge.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Callable

import asyncpg

from mdmbus.services.rules.audit import RETENTION_PURGE, Deletion, audit

__all__ = ["end_subscription", "purge_tenant", "sweep_due_purges"]


async def end_subscription(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: uuid.UUID,
                           now: dt.datetime, retention_days: float,
                           purge_after_days: float) -> bool:
    """Active -> retention; true if the tenant was active. Ending twice changes nothing.

    From here every row of the tenant carries its deadline, the purge day, so the sweeper's
    deadline index deletes them on time like any other expiring row.
    """
    read_only_until = now + dt.timedelta(days=retention_days)
    purge_at = read_only_until + dt.timedelta(days=purge_after_days)
    async with _connection(conn) as c, c.transaction():
        status = await c.execute(
            "UPDATE tenants SET state = 'retention', subscription_ended_at = $2,"
            " read_only_until = $3, purge_at = $4 WHERE tenant_id = $1 AND state = 'active'",
            tenant_id, now, read_only_until, purge_at)
        if not status.endswith(" 1"):
            return False
        await c.execute(
            "UPDATE records SET deadline = $2, deadline_rule = $3 WHERE tenant_id = $1"
            " AND body IS NOT NULL AND (deadline IS NULL OR deadline > $2)",
            tenant_id, purge_at, RETENTION_PURGE)
    return True


def _connection(conn: asyncpg.Connection | asyncpg.Pool):
    """A connection from a pool, or the connection itself, as an async context manager."""
    if isinstance(conn, asyncpg.Pool):
        return conn.acquire()
    return contextlib.nullcontext(conn)


async def purge_tenant(conn: asyncpg.Connection, region: str, tenant_id: uuid.UUID,
                       now: dt.datetime, rule: str, batch: int,
                       lag: float | None = None) -> list[Deletion]:
    """Deletes every row of the tenant in this store, in bounded batches, the tenant row last.

    Each batch commits with its audit row, so a crash mid-purge leaves a consistent, resumable
    state (the tenant row, still there, keeps the purge due).
    """
    deletions: list[Deletion] = []
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                # By ctid, as session_expiry.sweep_expired: the rows the tenant index finds are
                # deleted where they are, without a second descent of the primary key.
                "DELETE FROM records r WHERE r.ctid = ANY(ARRAY("
                "  SELECT ctid FROM records WHERE tenant_id = $1 LIMIT $2 FOR UPDATE))"
                " RETURNING r.record_id, r.category, r.body IS NULL AS tombstone",
                tenant_id, batch)
            by_category: dict[str, list[uuid.UUID]] = {}
            for row in rows:
                if not row["tombstone"]:  # a tombstone holds no data; its data was counted already
                    by_category.setdefault(row["category"], []).append(row["record_id"])
            batch_deletions = [Deletion(rule, region, c, ids, (lag,) * len(ids) if lag is not None
                                        else (), tenant_id) for c, ids in by_category.items()]
            # A short batch is not proof that the tenant has no rows left: a row updated by
            # another transaction while the DELETE waited for it has a new version the
            # DELETE's snapshot does not see. A new statement (a new snapshot) does.
            done = len(rows) < batch and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM records WHERE tenant_id = $1)", tenant_id)
            if done:
                sessions = await conn.fetch(
                    "DELETE FROM device_sessions WHERE tenant_id = $1 RETURNING session_id",
                    tenant_id)
                if sessions:
                    batch_deletions.append(Deletion(rule, region, "session",
                                                    [s["session_id"] for s in sessions],
                                                    tenant_id=tenant_id))
                tenant = await conn.fetchval(
                    "DELETE FROM tenants WHERE tenant_id = $1 RETURNING tenant_id", tenant_id)
                await conn.execute(
                    "INSERT INTO purged_tenants (tenant_id, purged_at) VALUES ($1, $2)"
                    " ON CONFLICT (tenant_id) DO NOTHING", tenant_id, now)
                if tenant:
                    batch_deletions.append(Deletion(rule, region, "tenant", [tenant],
                                                    tenant_id=tenant_id))
            await audit(conn, now, batch_deletions)
            deletions += batch_deletions
            if done:
                return deletions


async def sweep_due_purges(conn: asyncpg.Connection, region: str, now: dt.datetime, batch: int,
                           real_lag: Callable[[dt.datetime], float]) -> tuple[list[Deletion], list[uuid.UUID]]:
    """Purges every tenant whose 90 + 30 days are over; returns the deletions and the tenants."""
    due = await conn.fetch(
        "SELECT tenant_id, purge_at FROM tenants WHERE purge_at <= $1 ORDER BY purge_at", now)
    deletions: list[Deletion] = []
    for row in due:
        deletions += await purge_tenant(conn, region, row["tenant_id"], now, RETENTION_PURGE,
                                        batch, lag=real_lag(row["purge_at"]))
    return deletions, [row["tenant_id"] for row in due]


