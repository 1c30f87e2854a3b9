"""Relay acknowledgements from CM: each deletes the cloud copy of a relay record (rule 2)."""

from __future__ import annotations

import uuid
from typing import Sequence

from mdmbus import topics
from mdmbus.services.rules.delete_after_download import apply_acks
from mdmbus.streams.app import context, dead_letters
from mdmbus.streams.classify import classify_events
from mdmbus.streams.dead_letter import send_dead_letters
from mdmbus.streams.ingest import agent_for, route
from mdmbus.services.stores.retry import until_written

__all__ = ["process_acks"]


async def process_acks(events: Sequence) -> None:
    ctx = await context().ready()
    m = ctx.metrics
    accepted, rejected = classify_events(ctx.contract, m, events)
    by_region, unknown = await route(ctx, accepted)
    rejected += unknown
    now = ctx.clock.now()
    for region, batch in by_region.items():
        acks = [(uuid.UUID(str(a.record["relay_record_id"])), a.tenant_id,
                 max(0.0, ctx.clock.to_real_seconds(now - a.record["cm_committed_at"].timestamp())))
                for a in batch]

        async def write():
            async with ctx.stores.region(region).acquire() as conn:
                return await apply_acks(conn, region, ctx.clock.now_dt(), acks)
        deletions = await until_written(write,
                                        lambda exc: m.store_batches.labels(region, "error").inc())
        m.store_batches.labels(region, "ok").inc()
        m.count_deletions(deletions)
    await send_dead_letters(dead_letters, rejected, m)


acks_agent = agent_for(topics.RELAY_ACK, process_acks)
