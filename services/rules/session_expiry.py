"""Rule 3, session expiry: commands to and from a device are kept only while its session is
active, and deleted by the deadline session expiry + grace (the source allows an hour;
mdmbus's default grace is 0 and the sweeper runs every half second).

A command's deadline follows its session: a command that arrives before its session is known
gets a fallback deadline, replaced when the session event is applied; a session that ends or
expires early pulls its commands' deadlines in. The deletion itself is the sweeper's
(services/stores/expiry.py), by the deadline index."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Sequence

from mdmbus.services.stores.pools import Connection

__all__ = ["SessionEvent", "session_expiry", "command_deadline_sql", "apply_session_events",
           "COMMAND_FALLBACK"]

#: How long a command is kept when its session is not known yet (simulated time); the session
#: event, once applied, sets the real deadline.
COMMAND_FALLBACK = dt.timedelta(minutes=15)

#: Events that keep a session open; any other (END, EXPIRED) closes it.
_OPEN = ("START", "HEARTBEAT")


@dataclass(frozen=True, slots=True)
class SessionEvent:
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    session_id: uuid.UUID
    #: START, HEARTBEAT, END or EXPIRED
    event_type: str
    expires_at: dt.datetime
    event_time: dt.datetime


def session_expiry(event: SessionEvent) -> dt.datetime:
    """When the session of ``event`` expires: as announced while it is open; an ended or
    expired session expires at its end, whatever it announced before."""
    if event.event_type in _OPEN:
        return event.expires_at
    return min(event.expires_at, event.event_time)


def command_deadline_sql(session_expires_at: str, fallback: str, grace_s: str) -> str:
    """A command's deadline as a SQL expression over the three given SQL expressions: its
    session's expiry plus the grace, or, while the session is unknown, its fallback (the
    command's own time + COMMAND_FALLBACK, set by the pipeline) plus the grace. The one
    definition: the store's write (services/stores/records.py) and the session update below
    both use it, so a command gets the same deadline whichever comes first."""
    return f"(COALESCE({session_expires_at}, {fallback}) + make_interval(secs => {grace_s}))"


#: The session update: every held command of the session takes its deadline from it.
_MOVE_DEADLINES = (
    "UPDATE records SET deadline = " + command_deadline_sql("s.expires_at", "NULL", "$3")
    + " FROM device_sessions s WHERE s.tenant_id = $4 AND s.device_id = $1"
    " AND records.tenant_id = $4 AND records.device_id = $1"
    " AND records.category = 'command' AND records.session_id = $2"
    " AND records.has_body")


async def apply_session_events(conn: Connection, events: Sequence[SessionEvent],
                               grace_s: float
                               ) -> tuple[list[SessionEvent], list[tuple[SessionEvent, str | None]]]:
    """Opens, extends or closes sessions and moves their commands' deadlines with them, in the
    caller's transaction. Returns (applied, refused): events of tenants not active in this
    store are refused, each with its tenant's state ('retention', 'purged', or None for a
    tenant this store does not know)."""
    applied: list[SessionEvent] = []
    refused: list[tuple[SessionEvent, str | None]] = []
    for ev in events:
        state = await conn.fetchval(
            "SELECT COALESCE((SELECT state FROM tenants WHERE tenant_id = $1),"
            " (SELECT 'purged' FROM purged_tenants WHERE tenant_id = $1))", ev.tenant_id)
        if state != "active":
            refused.append((ev, state))
            continue
        await conn.execute(
            "INSERT INTO device_sessions (device_id, tenant_id, session_id, expires_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, device_id) DO UPDATE SET"
            " session_id = EXCLUDED.session_id,"
            " expires_at = CASE WHEN device_sessions.session_id = EXCLUDED.session_id"
            "   AND $5 THEN LEAST(device_sessions.expires_at, EXCLUDED.expires_at)"
            "   ELSE EXCLUDED.expires_at END",
            ev.device_id, ev.tenant_id, ev.session_id, session_expiry(ev),
            ev.event_type not in _OPEN)
        await conn.execute(_MOVE_DEADLINES, ev.device_id, ev.session_id, grace_s, ev.tenant_id)
        applied.append(ev)
    return applied, refused
