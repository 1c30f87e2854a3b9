"""What the rules promise, measured: rows still present past their deadline (must be 0)."""

from __future__ import annotations

import datetime as dt

import asyncpg
from mdmbus.services.stores.pools import Connection

__all__ = ["rows_past_deadline"]


async def rows_past_deadline(conn: Connection | asyncpg.Pool,
                             late: dt.datetime) -> dict[str, int]:
    """Rows whose deadline was before ``late``, by rule: session expiry, retention purge and
    dead-letter expiry."""
    counts = {"session_expiry": 0, "retention_purge": 0, "dead_letter_expiry": 0}
    for row in await conn.fetch(
            "SELECT COALESCE(deadline_rule, 'session_expiry') AS rule, count(*) AS n FROM records"
            " WHERE deadline < $1 AND has_body GROUP BY 1", late):
        counts[row["rule"]] = counts.get(row["rule"], 0) + row["n"]
    counts["session_expiry"] += await conn.fetchval(
        "SELECT count(*) FROM device_sessions WHERE expires_at < $1", late)
    # Tenants past their purge day (their tombstones and sessions go with the tenant row).
    counts["retention_purge"] += await conn.fetchval(
        "SELECT count(*) FROM tenants WHERE purge_at < $1", late)
    counts["dead_letter_expiry"] += await conn.fetchval(
        "SELECT count(*) FROM dead_letters WHERE deadline < $1", late)
    return counts
