"""Device session events: open, extend and close sessions; commands' deadlines follow them."""

from __future__ import annotations

import uuid
from typing import Sequence

from mdmbus import topics
from mdmbus.services.rules.session_expiry import SessionEvent, apply_session_events
from mdmbus.streams.app import context, dead_letters
from mdmbus.streams.classify import Accepted, classify_events
from mdmbus.streams.dead_letter import send_dead_letters
from mdmbus.streams.ingest import agent_for, route
from mdmbus.services.stores.retry import until_written

__all__ = ["process_sessions"]


def _event(a: Accepted) -> SessionEvent:
    env, rec = a.record["envelope"], a.record
    return SessionEvent(a.tenant_id, uuid.UUID(str(env["device_id"])),
                        uuid.UUID(str(rec["session_id"])), rec["event_type"], rec["expires_at"],
                        env["event_time"])


async def process_sessions(events: Sequence) -> None:
    ctx = await context().ready()
    m = ctx.metrics
    accepted, rejected = classify_events(ctx.contract, m, events)
    by_region, unknown = await route(ctx, accepted)
    rejected += unknown
    for region, batch in by_region.items():
        session_events = [_event(a) for a in batch]

        async def write():
            async with ctx.stores.region(region).acquire() as conn:
                return await apply_session_events(conn, session_events,
                                                  ctx.settings.command_grace_s)
        _, refused = await until_written(
            write, lambda exc: m.store_batches.labels(region, "error").inc())
        m.store_batches.labels(region, "ok").inc()
        refused_at = {i for i, ev in enumerate(session_events) if ev in refused}
        for i, a in enumerate(batch):
            if i in refused_at:
                rejected.append(a.refuse("tenant_in_retention",
                                         "tenant is not active: no new sessions"))
            else:
                m.records_stored.labels(region, "session").inc()
    await send_dead_letters(dead_letters, rejected, m)


sessions_agent = agent_for(topics.DEVICE_SESSIONS, process_sessions)
