"""Deletes what is past its deadline in a region store, whatever rule set the deadline:
records (each row carries the rule in ``deadline_rule``), device sessions (rule 3) and dead
letters (their body's keeping time). The sweeper calls it; each call is bounded and walks the
deadline indexes in order, so it costs what it deletes, not the size of the tables."""

from __future__ import annotations

import datetime as dt
from typing import Callable

import asyncpg

from mdmbus.categories import Category
from mdmbus.services.rules.audit import DEAD_LETTER_EXPIRY, SESSION_EXPIRY, Deletion, audit

__all__ = ["sweep_deadlines"]


async def sweep_deadlines(conn: asyncpg.Connection, region: str, now: dt.datetime, limit: int,
                          real_lag: Callable[[dt.datetime], float]) -> list[Deletion]:
    """Deletes up to ``limit`` rows of each table past their deadline, oldest first, with
    their audit rows, in one transaction."""
    async with conn.transaction():
        records = await conn.fetch(
            # By ctid: the rows found through the deadline index are deleted where they are,
            # without a second descent of the primary key (flat cost per row as the store
            # grows, BENCHMARKS.md purge scaling); FOR UPDATE keeps each row in place meanwhile.
            "DELETE FROM records r WHERE r.ctid = ANY(ARRAY("
            "  SELECT ctid FROM records WHERE deadline <= $1 AND body IS NOT NULL"
            "  ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED))"
            " RETURNING r.record_id, r.category, r.deadline, r.deadline_rule, r.tenant_id",
            now, limit)
        sessions = await conn.fetch(
            "DELETE FROM device_sessions d USING ("
            "  SELECT device_id FROM device_sessions WHERE expires_at <= $1"
            "  ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) doomed"
            " WHERE d.device_id = doomed.device_id"
            " RETURNING d.session_id, d.expires_at, d.tenant_id", now, limit)
        letters = await conn.fetch(
            "DELETE FROM dead_letters d WHERE d.ctid = ANY(ARRAY("
            "  SELECT ctid FROM dead_letters WHERE deadline <= $1"
            "  ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED))"
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
