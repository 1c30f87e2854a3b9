"""Deletes what is past its deadline in a region store, whatever rule set the deadline:
records (each row carries the rule in ``deadline_rule``), device sessions (rule 3) and dead
letters (their body's keeping time). The sweeper calls it; each call is bounded and walks the
deadline indexes in order, so it costs what it deletes, not the size of the tables."""

from __future__ import annotations

import datetime as dt
from typing import Callable


from mdmbus.categories import Category
from mdmbus.services.rules.audit import DEAD_LETTER_EXPIRY, SESSION_EXPIRY, Deletion, audit
from mdmbus.services.stores.pools import Connection

__all__ = ["sweep_deadlines"]


async def sweep_deadlines(conn: Connection, region: str, now: dt.datetime, limit: int,
                          real_lag: Callable[[dt.datetime], float]) -> list[Deletion]:
    """Deletes up to ``limit`` rows of each table past their deadline, oldest first, with
    their audit rows, in one transaction.

    The sweeper may read no body and lock no row (mdmbus/identities.py): each delete picks
    its rows through the deadline index and deletes them by primary key; a row another
    transaction holds is waited for, and the deadline is checked again on the version that
    transaction left (a deadline moved later, or a record acknowledged into a tombstone
    meanwhile, is not deleted here)."""
    async with conn.transaction():
        records = await conn.fetch(
            "DELETE FROM records r WHERE (r.tenant_id, r.record_id) IN ("
            "  SELECT tenant_id, record_id FROM records WHERE deadline <= $1 AND has_body"
            "  ORDER BY deadline LIMIT $2) AND r.deadline <= $1 AND r.has_body"
            " RETURNING r.record_id, r.category, r.deadline, r.deadline_rule, r.tenant_id",
            now, limit)
        sessions = await conn.fetch(
            "DELETE FROM device_sessions d WHERE (d.tenant_id, d.device_id) IN ("
            "  SELECT tenant_id, device_id FROM device_sessions WHERE expires_at <= $1"
            "  ORDER BY expires_at LIMIT $2) AND d.expires_at <= $1"
            " RETURNING d.session_id, d.expires_at, d.tenant_id", now, limit)
        letters = await conn.fetch(
            "DELETE FROM dead_letters d WHERE (d.source_topic, d.source_partition,"
            " d.source_offset) IN (SELECT source_topic, source_partition, source_offset"
            "  FROM dead_letters WHERE deadline <= $1 ORDER BY deadline LIMIT $2)"
            " AND d.deadline <= $1"
            " RETURNING d.record_id, d.deadline, d.tenant_id", now, limit)
        groups: dict[tuple, list] = {}
        for row in records:
            rule = row["deadline_rule"] or SESSION_EXPIRY
            groups.setdefault((rule, row["category"], row["tenant_id"]), []).append(row)
        deletions = [Deletion(rule, region, category, [r["record_id"] for r in rows],
                              [real_lag(r["deadline"]) for r in rows], tenant)
                     for (rule, category, tenant), rows in groups.items()]
        by_tenant: dict = {}
        for row in sessions:
            by_tenant.setdefault(row["tenant_id"], []).append(row)
        deletions += [Deletion(SESSION_EXPIRY, region, Category.SESSION,
                               [r["session_id"] for r in rows],
                               [real_lag(r["expires_at"]) for r in rows], tenant)
                      for tenant, rows in by_tenant.items()]
        by_tenant = {}
        for row in letters:
            by_tenant.setdefault(row["tenant_id"], []).append(row)
        for tenant, rows in by_tenant.items():
            ids = [r["record_id"] for r in rows if r["record_id"] is not None]
            deletions.append(Deletion(DEAD_LETTER_EXPIRY, region, Category.DEAD_LETTER, ids,
                                      [real_lag(r["deadline"]) for r in rows], tenant,
                                      unidentified=len(rows) - len(ids)))
        await audit(conn, now, deletions)
    return deletions
