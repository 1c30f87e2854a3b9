"""What the rules promise, measured: rows still present past their deadline (must be 0)."""

from __future__ import annotations

import datetime as dt

import asyncpg

__all__ = ["rows_past_deadline"]


async def rows_past_deadline(conn: asyncpg.Connection | asyncpg.Pool,
                             late: dt.datetime) -> dict[str, int]:
    """Rows whose deadline was before ``late``, by rule: session expiry and retention purge."""
    commands = await conn.fetchval(
        "SELECT count(*) FROM records WHERE deadline < $1 AND body IS NOT NULL", late)
    sessions = await conn.fetchval(
        "SELECT count(*) FROM device_sessions WHERE expires_at < $1", late)
    purges = await conn.fetchval(
        "SELECT count(*) FROM records r JOIN tenants t USING (tenant_id) WHERE t.purge_at < $1",
        late)
    return {"session_expiry": commands + sessions, "retention_purge": purges}
