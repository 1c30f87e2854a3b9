"""Rule 3, session expiry: commands to and from a device are kept only while its session is
active, and deleted by the deadline session expiry + grace (the source allows an hour;
mdmbus's default grace is 0 and the sweeper runs every half second)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

import asyncpg

from mdmbus.services.rules.audit import SESSION_EXPIRY, Deletion, audit

__all__ = ["SessionEvent", "apply_session_events", "sweep_expired"]


@dataclass(frozen=True, slots=True)
class SessionEvent:
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    session_id: uuid.UUID
    #: START, HEARTBEAT, END or EXPIRED
    event_type: str
    expires_at: dt.datetime
    event_time: dt.datetime


async def apply_session_events(conn: asyncpg.Connection, events: Sequence[SessionEvent],
                               grace_s: float) -> tuple[list[SessionEvent], list[SessionEvent]]:
    """Opens, extends or closes sessions; moves their commands' deadlines with them.

    Returns (applied, refused): events of tenants not active in this store are refused.
    """
    applied, refused = [], []
    async with conn.transaction():
        for ev in events:
            active = await conn.fetchval(
                "SELECT state = 'active' FROM tenants WHERE tenant_id = $1", ev.tenant_id)
            if not active:
                refused.append(ev)
                continue
            # An ended session expires at its end, whatever it announced before.
            expires = ev.expires_at if ev.event_type in ("START", "HEARTBEAT") else \
                min(ev.expires_at, ev.event_time)
            await conn.execute(
                "INSERT INTO device_sessions (device_id, tenant_id, session_id, expires_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE SET"
                " tenant_id = EXCLUDED.tenant_id, session_id = EXCLUDED.session_id,"
                " expires_at = CASE WHEN device_sessions.session_id = EXCLUDED.session_id"
                "   AND $5 THEN LEAST(device_sessions.expires_at, EXCLUDED.expires_at)"
                "   ELSE EXCLUDED.expires_at END",
                ev.device_id, ev.tenant_id, ev.session_id, expires,
                ev.event_type not in ("START", "HEARTBEAT"))
            await conn.execute(
                "UPDATE records SET deadline = s.expires_at + make_interval(secs => $3)"
                " FROM device_sessions s WHERE s.device_id = $1 AND records.device_id = $1"
                " AND records.category = 'command' AND records.session_id = $2"
                " AND records.body IS NOT NULL",
                ev.device_id, ev.session_id, grace_s)
            applied.append(ev)
    return applied, refused


async def sweep_expired(conn: asyncpg.Connection, region: str, now: dt.datetime, limit: int,
                        real_lag: Callable[[dt.datetime], float]) -> list[Deletion]:
    """Deletes up to ``limit`` rows and sessions past their deadline, oldest first.

    Rows carry the rule that set their deadline (``deadline_rule``): commands that of session
    expiry, the rows of a tenant in retention that of the purge (set when the subscription
    ended, services/rules/retention.py). The sub-select walks the deadline index in order, so
    the cost follows the rows deleted, not the size of the table.
    """
    async with conn.transaction():
        commands = await conn.fetch(
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
            " RETURNING d.session_id, d.expires_at", now, limit)
        deletions = []
        groups: dict[tuple, list] = {}
        for row in commands:
            rule = row["deadline_rule"] or SESSION_EXPIRY
            tenant = row["tenant_id"] if rule != SESSION_EXPIRY else None
            groups.setdefault((rule, row["category"], tenant), []).append(row)
        for (rule, category, tenant), rows in groups.items():
            deletions.append(Deletion(rule, region, category, [r["record_id"] for r in rows],
                                      [real_lag(r["deadline"]) for r in rows], tenant))
        if sessions:
            deletions.append(Deletion(SESSION_EXPIRY, region, "session",
                                      [r["session_id"] for r in sessions],
                                      [real_lag(r["expires_at"]) for r in sessions]))
        await audit(conn, now, deletions)
    return deletions
