"""What a region store holds of one tenant, by category, with the deadline that ends each and
the rule that sets it: the read queries behind the gateway's ``GET /v1/holdings`` and
``GET /v1/erasure-receipts`` (the privacy center shows their answers, nothing else).

Counts, dates and rule names only: no body, no field of a record, no dead letter's error text
(which may quote values). Every query names its tenant and runs on a connection held to that
tenant by row-level security (the gateway's ``as_tenant``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from mdmbus.categories import Category
from mdmbus.services.rules.audit import (DEAD_LETTER_EXPIRY, DELETE_AFTER_DOWNLOAD,
                                         INVENTORY_CACHE, RETENTION_PURGE, SESSION_EXPIRY)
from mdmbus.services.stores.pools import Connection

__all__ = ["lifecycle", "records_held", "held_counts", "ids_held", "dead_letters_held", "cm_downloads", "receipt_ids",
           "UNDATED_RULE"]

#: Category -> the rule that ends a row without a dated deadline: an event, not a date (CM's
#: acknowledgement, the device un-enrolling, its session ending), or else the tenant's purge,
#: which ends every row at the latest once its subscription has ended.
UNDATED_RULE = {Category.UPLOAD.value: RETENTION_PURGE,
                Category.RELAY.value: DELETE_AFTER_DOWNLOAD,
                Category.INVENTORY_CACHE.value: INVENTORY_CACHE,
                Category.COMMAND.value: SESSION_EXPIRY}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()


async def lifecycle(conn: Connection, tenant: uuid.UUID) -> dict[str, Any] | None:
    """The tenant's lifecycle dates from the directory (None: not in it)."""
    row = await conn.fetchrow(
        "SELECT state, onboarded_at, ended_at, read_only_until, purge_at, purged_at"
        " FROM tenant_directory WHERE tenant_id = $1", tenant)
    if row is None:
        return None
    return {"state": row["state"], "onboarded_at": _iso(row["onboarded_at"]),
            "subscription_ended_at": _iso(row["ended_at"]),
            "read_only_until": _iso(row["read_only_until"]), "purge_at": _iso(row["purge_at"]),
            "purged_at": _iso(row["purged_at"])}


async def records_held(conn: Connection, tenant: uuid.UUID,
                       purge_at: dt.datetime | None) -> dict[str, list[dict[str, Any]]]:
    """Held rows of ``records`` by category and kind: count, oldest (stored, shared clock),
    the next deadline and its rule. A row without a dated deadline waits for its category's
    event (UNDATED_RULE); the tenant's purge date, once set, bounds every row."""
    rows = await conn.fetch(
        "SELECT category, kind, count(*) AS n, min(stored_at) AS oldest,"
        " min(deadline) AS next_deadline,"
        " (array_agg(deadline_rule ORDER BY deadline) FILTER (WHERE deadline IS NOT NULL))[1]"
        "   AS next_rule"
        " FROM records WHERE tenant_id = $1 AND has_body GROUP BY category, kind"
        " ORDER BY category, length(kind), kind", tenant)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        deadline, rule = r["next_deadline"], r["next_rule"]
        if deadline is None:
            rule = UNDATED_RULE.get(r["category"], RETENTION_PURGE)
        if purge_at is not None and (deadline is None or purge_at < deadline):
            deadline, rule = purge_at, RETENTION_PURGE
        out.setdefault(r["category"], []).append({
            "kind": r["kind"], "count": r["n"], "oldest": _iso(r["oldest"]),
            "next_deadline": _iso(deadline), "rule": rule})
    return out


async def dead_letters_held(conn: Connection,
                            tenant: uuid.UUID) -> list[dict[str, Any]]:
    """The tenant's refused records by reason: count, oldest, next deadline (the body's
    keeping time) and how many still keep a body (redacted of private keys)."""
    rows = await conn.fetch(
        "SELECT reason, count(*) AS n, min(stored_at) AS oldest, min(deadline) AS next_deadline,"
        " count(*) FILTER (WHERE body_kept) AS bodies"
        " FROM dead_letters WHERE tenant_id = $1 GROUP BY reason ORDER BY reason", tenant)
    return [{"reason": r["reason"], "count": r["n"], "oldest": _iso(r["oldest"]),
             "next_deadline": _iso(r["next_deadline"]), "rule": DEAD_LETTER_EXPIRY,
             "bodies_kept": r["bodies"]} for r in rows]


async def cm_downloads(conn: Connection, tenant: uuid.UUID,
                       now_real: dt.datetime) -> dict[str, Any]:
    """Relay records waiting for CM: how many, the oldest's age in real seconds (the pending
    time CM's connector controls), and when CM last acknowledged one."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(stored_at_real) AS oldest FROM records"
        " WHERE tenant_id = $1 AND category = $2 AND has_body", tenant, Category.RELAY.value)
    last = await conn.fetchrow(
        "SELECT max(deleted_at) AS at, max(deleted_at_real) AS at_real FROM deletion_audit"
        " WHERE tenant_id = $1 AND rule = $2", tenant, DELETE_AFTER_DOWNLOAD)
    assert row is not None and last is not None  # aggregates without GROUP BY: one row each
    oldest = row["oldest"]
    return {"pending": row["n"],
            "oldest_pending_age_s": None if oldest is None
            else round(max(0.0, (now_real - oldest).total_seconds()), 3),
            "last_acknowledged_at": _iso(last["at"]),
            "rule": DELETE_AFTER_DOWNLOAD}


async def receipt_ids(conn: Connection, tenant: uuid.UUID) -> list[uuid.UUID]:
    """The tenant's erasure receipts, newest first (they outlive its purge)."""
    rows = await conn.fetch("SELECT receipt_id FROM erasure_receipts WHERE tenant_id = $1"
                            " ORDER BY requested_at DESC, receipt_id", tenant)
    return [r["receipt_id"] for r in rows]


async def held_counts(conn: Connection, tenant: uuid.UUID) -> dict[str, int]:
    """Category -> how many records the tenant holds (tombstones of relayed rows excluded)."""
    return {r["category"]: r["n"] for r in await conn.fetch(
        "SELECT category, count(*) AS n FROM records WHERE tenant_id = $1"
        " AND has_body GROUP BY category", tenant)}


async def ids_held(conn: Connection, tenant: uuid.UUID,
                   record_ids: list[str]) -> set[str]:
    """The ids among ``record_ids`` the tenant already has a row for (a record, or the
    tombstone of one delivered to CM): the store would not take them again."""
    if not record_ids:
        return set()
    return {r[0] for r in await conn.fetch(
        "SELECT record_id::text FROM records WHERE tenant_id = $1"
        " AND record_id = ANY($2::uuid[])", tenant, record_ids)}
