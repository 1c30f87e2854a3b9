"""Rule 4, retention: a subscription that ends (not renewed, expired, or cancelled without a
deletion request) puts the tenant into 90 days of read-only retention; 30 days after that every
row of the tenant is deleted. A cancellation with a deletion request deletes at once.

Read-only is enforced by the store: writes join on ``tenants.state = 'active'``
(services/stores/records.py), so a write after the change is refused whatever a processor's
cache says; reads and exports go on until the purge. Both the region store and the global
directory follow the tenant's state; the directory keeps a purged tenant as a tombstone
(rule 7)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Callable


from mdmbus.categories import Category
from mdmbus.services.rules.audit import DELETION_REQUEST, RETENTION_PURGE, Deletion, audit
from mdmbus.services.stores import directory
from mdmbus.services.stores.pools import Connection, Stores

__all__ = ["retention_dates", "end_subscription", "purge_tenant", "delete_on_request",
           "sweep_due_purges"]


def retention_dates(ended_at: dt.datetime, retention_days: float,
                    purge_after_days: float) -> tuple[dt.datetime, dt.datetime]:
    """(end of the read-only period, the purge day) of a subscription that ended at
    ``ended_at``."""
    read_only_until = ended_at + dt.timedelta(days=retention_days)
    return read_only_until, read_only_until + dt.timedelta(days=purge_after_days)


async def end_subscription(stores: Stores, region: str, tenant_id: uuid.UUID, now: dt.datetime,
                           retention_days: float, purge_after_days: float) -> bool:
    """Active -> retention, in the region store and the directory; true if the tenant was
    active. Ending twice changes nothing.

    From here every row of the tenant carries its deadline, the purge day, so the sweeper's
    deadline index deletes them on time like any other expiring row.
    """
    read_only_until, purge_at = retention_dates(now, retention_days, purge_after_days)
    async with stores.region(region).acquire() as conn, conn.transaction():
        status = await conn.execute(
            "UPDATE tenants SET state = 'retention', subscription_ended_at = $2,"
            " read_only_until = $3, purge_at = $4 WHERE tenant_id = $1 AND state = 'active'",
            tenant_id, now, read_only_until, purge_at)
        changed = status.endswith(" 1")
        if changed:
            await conn.execute(
                "UPDATE records r SET deadline = $2, deadline_rule = $3 FROM ("
                # In record_id order, as every writer of several rows locks them.
                "  SELECT record_id FROM records WHERE tenant_id = $1 AND has_body"
                "  AND (deadline IS NULL OR deadline > $2) ORDER BY record_id FOR UPDATE) t"
                " WHERE r.record_id = t.record_id", tenant_id, purge_at, RETENTION_PURGE)
            await conn.execute(
                "UPDATE dead_letters SET deadline = $2 WHERE tenant_id = $1 AND deadline > $2",
                tenant_id, purge_at)
    # After the store: a crash between the two leaves the directory behind, and the replayed
    # event (or the next one) brings it level; the store is what refuses writes.
    await directory.mark_retention(stores.directory_of(region), tenant_id, now, read_only_until,
                                   purge_at)
    return changed


async def purge_tenant(conn: Connection, region: str, tenant_id: uuid.UUID,
                       now: dt.datetime, rule: str, batch: int,
                       lag: float | None = None) -> list[Deletion]:
    """Deletes every row of the tenant in this region store (records, dead letters, sessions),
    in bounded batches, the tenant row last, and leaves its id in purged_tenants.

    Each batch commits with its audit row, so a crash mid-purge leaves a consistent, resumable
    state (the tenant row, still there, keeps the purge due).
    """
    deletions: list[Deletion] = []
    lags = (lambda n: (lag,) * n) if lag is not None else (lambda n: ())
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                # The store's function (services/stores/region_functions.sql): by primary
                # key, from the tenant index; it can only delete. A row updated while the
                # delete waited for it is still deleted (its key did not change).
                "SELECT record_id, category, tombstone"
                " FROM public.purge_tenant_records($1, $2)", tenant_id, batch)
            by_category: dict[str, list[uuid.UUID]] = {}
            for row in rows:
                if not row["tombstone"]:  # a tombstone holds no data; its data was counted already
                    by_category.setdefault(row["category"], []).append(row["record_id"])
            batch_deletions = [Deletion(rule, region, c, ids, lags(len(ids)), tenant_id)
                               for c, ids in by_category.items()]
            # A short batch is not proof that the tenant has no rows left: a row updated by
            # another transaction while the DELETE waited for it has a new version the
            # DELETE's snapshot does not see. A new statement (a new snapshot) does.
            done = len(rows) < batch and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM records WHERE tenant_id = $1)", tenant_id)
            if done:
                letters = await conn.fetch(
                    "DELETE FROM dead_letters WHERE tenant_id = $1 RETURNING record_id",
                    tenant_id)
                if letters:
                    ids = [r["record_id"] for r in letters if r["record_id"] is not None]
                    batch_deletions.append(Deletion(
                        rule, region, Category.DEAD_LETTER, ids, lags(len(letters)), tenant_id,
                        unidentified=len(letters) - len(ids)))
                sessions = await conn.fetch(
                    "DELETE FROM device_sessions WHERE tenant_id = $1 RETURNING session_id",
                    tenant_id)
                if sessions:
                    batch_deletions.append(Deletion(rule, region, Category.SESSION,
                                                    [s["session_id"] for s in sessions],
                                                    tenant_id=tenant_id))
                tenant = await conn.fetchval(
                    "DELETE FROM tenants WHERE tenant_id = $1 RETURNING tenant_id", tenant_id)
                await conn.execute(
                    "INSERT INTO purged_tenants (tenant_id, purged_at) VALUES ($1, $2)"
                    " ON CONFLICT (tenant_id) DO NOTHING", tenant_id, now)
                if tenant:
                    batch_deletions.append(Deletion(rule, region, Category.TENANT, [tenant],
                                                    tenant_id=tenant_id))
            await audit(conn, now, batch_deletions)
            deletions += batch_deletions
            if done:
                return deletions


async def delete_on_request(stores: Stores, region: str, tenant_id: uuid.UUID, now: dt.datetime,
                            batch: int) -> list[Deletion]:
    """A cancellation with a deletion request: every row of the tenant, at once."""
    async with stores.region(region).acquire() as conn:
        deletions = await purge_tenant(conn, region, tenant_id, now, DELETION_REQUEST, batch,
                                       lag=0.0)
    await directory.mark_purged(stores.directory_of(region), tenant_id, now)
    return deletions


async def sweep_due_purges(stores: Stores, region: str, now: dt.datetime, batch: int,
                           real_lag: Callable[[dt.datetime], float]) -> list[Deletion]:
    """Purges every tenant of the region whose 90 + 30 days are over."""
    pool = stores.region(region)
    due = await pool.fetch(
        "SELECT tenant_id, purge_at FROM tenants WHERE purge_at <= $1 ORDER BY purge_at", now)
    deletions: list[Deletion] = []
    for row in due:
        async with pool.acquire() as conn:
            deletions += await purge_tenant(conn, region, row["tenant_id"], now, RETENTION_PURGE,
                                            batch, lag=real_lag(row["purge_at"]))
        await directory.mark_purged(stores.directory_of(region), row["tenant_id"], now)
    return deletions
