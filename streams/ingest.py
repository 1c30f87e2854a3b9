"""Upload, relay and command records: validate, route to the tenant's region, store.

One batch at a time: classify every message, look up the regions of the batch's tenants,
write each region's rows in one idempotent transaction, dead-letter what was refused, and
only then let faust acknowledge the batch's offsets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections import Counter, defaultdict
from typing import Sequence

from mdmbus import topics
from mdmbus.services.stores.records import StoreRow, WriteOutcome, write_records
from mdmbus.streams.app import app, context, dead_letters, topic
from mdmbus.streams.classify import Accepted, Rejected, as_uuid, classify_events
from mdmbus.streams.dead_letter import send_dead_letters
from mdmbus.services.stores.retry import until_written

__all__ = ["category_of", "process_batch", "route", "agent_for"]

log = logging.getLogger("mdmbus.pipeline")

#: How long a command is kept when its session is not known yet (simulated seconds); the
#: session event, once applied, sets the real deadline.
COMMAND_FALLBACK_S = 15 * 60


def category_of(kind: str) -> str:
    if kind.startswith("U"):
        return "upload"
    if kind.startswith("R"):
        return "relay"
    if kind == "inventory_cache":
        return "inventory_cache"
    return "command"


async def _one_by_one(process, events: Sequence) -> None:
    ctx = context()
    for event in events:
        try:
            await process([event])
        except Exception as exc:
            log.exception("record at %s[%d]@%d failed", event.message.topic,
                          event.message.partition, event.message.offset)
            msg = event.message
            await send_dead_letters(dead_letters, [Rejected(
                "processing_error", f"{type(exc).__name__}: {exc}", msg.value or b"", False,
                msg.key, msg.topic, msg.partition, msg.offset)], ctx.metrics)


def _row(a: Accepted) -> StoreRow:
    env = a.record["envelope"]
    category = category_of(a.kind)
    deadline = None
    rule = None
    if category == "command":
        deadline = env["event_time"] + dt.timedelta(seconds=COMMAND_FALLBACK_S)
        rule = "session_expiry"
    return StoreRow(as_uuid(env["record_id"]), as_uuid(env["tenant_id"]), a.kind,
                    category, _uuid(env.get("device_id")), _uuid(a.record.get("session_id")),
                    env["event_time"], deadline, rule, a.value)


def _uuid(value) -> uuid.UUID | None:
    return None if value is None else as_uuid(value)


async def route(ctx, accepted: Sequence[Accepted]) -> tuple[dict[str, list[Accepted]], list[Rejected]]:
    """Rule 1: each record to its tenant's region; a tenant never onboarded is refused.

    Onboarding travels on its own topic, so a tenant's first records can overtake it: a tenant
    not found is looked up again for up to ``unknown_tenant_wait_s`` before its records are
    refused.
    """
    tenants = {a.tenant_id for a in accepted}
    lookup = lambda: until_written(  # noqa: E731
        lambda: ctx.directory.regions_of(tenants),
        lambda exc: ctx.metrics.store_batches.labels("directory", "error").inc())
    regions = await lookup()
    deadline = time.monotonic() + ctx.settings.unknown_tenant_wait_s
    while len(regions) < len(tenants) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        regions = await lookup()
    by_region: dict[str, list[Accepted]] = defaultdict(list)
    unknown = []
    for a in accepted:
        region = regions.get(a.tenant_id)
        if region is None:
            unknown.append(a.refuse("tenant_not_onboarded",
                                    "tenant has not been onboarded in any region"))
        else:
            by_region[region].append(a)
    return by_region, unknown


async def process_batch(events: Sequence) -> None:
    ctx = await context().ready()
    accepted, rejected = classify_events(ctx.contract, ctx.metrics, events)
    by_region, unknown = await route(ctx, accepted)
    rejected += unknown

    # Regions are separate databases: their transactions run side by side.
    results = await asyncio.gather(*(_store(region, batch) for region, batch in by_region.items()),
                                   return_exceptions=True)
    for result in results:  # every write has finished before a failure is raised
        if isinstance(result, BaseException):
            raise result
        rejected += result
    await send_dead_letters(dead_letters, rejected, ctx.metrics)


async def _store(region: str, batch: list[Accepted]) -> list[Rejected]:
    ctx = context()
    m = ctx.metrics
    rows = [_row(a) for a in batch]
    for category, n in Counter(row.category for row in rows).items():
        m.records_routed.labels(region, category).inc(n)

    async def write() -> WriteOutcome:
        started = time.perf_counter()
        async with ctx.stores.region(region).acquire() as conn:
            outcome = await write_records(conn, rows, ctx.clock.now_dt(),
                                          ctx.settings.command_grace_s)
        m.store_write_seconds.labels(region).observe(time.perf_counter() - started)
        m.store_batches.labels(region, "ok").inc()
        return outcome

    outcome = await until_written(write, lambda exc: m.store_batches.labels(region, "error").inc())
    now = ctx.clock.now()
    by_id = {row.record_id: row for row in rows}
    stored = Counter()
    latency = {}  # one labelled child per category, not a label lookup per record
    for rid in outcome.stored:
        row = by_id[rid]
        stored[row.category] += 1
        if row.category not in latency:
            latency[row.category] = m.end_to_end_seconds.labels(row.category)
        latency[row.category].observe(
            max(0.0, ctx.clock.to_real_seconds(now - row.event_time.timestamp())))
    for category, n in stored.items():
        m.records_stored.labels(region, category).inc(n)
    for category, n in Counter(by_id[rid].category for rid in outcome.duplicates).items():
        m.records_duplicate.labels(region, category).inc(n)
    refused: list[Rejected] = []
    if not (outcome.in_retention or outcome.not_onboarded or outcome.deleted):
        return refused
    index = {row.record_id: a for row, a in zip(rows, batch)}
    for rid in outcome.in_retention:
        refused.append(index[rid].refuse(
            "tenant_in_retention", "tenant is in its read-only retention period: no new writes"))
    for rid in outcome.not_onboarded:
        refused.append(index[rid].refuse("tenant_not_onboarded",
                                         f"tenant is not onboarded in region {region}"))
    for rid in outcome.deleted:
        refused.append(index[rid].refuse("tenant_deleted",
                                         "the tenant's data was deleted: no new writes"))
    return refused


def agent_for(name: str, process):
    """A faust agent that hands ``process`` one batch at a time; faust acknowledges the
    batch's offsets only after ``process`` returns, so only durable work is committed.

    faust acknowledges a batch even when its processing raised, so nothing may escape here:
    store outages are retried inside ``process``; any other error is a fault of one record,
    found by processing the batch again one record at a time, and that record goes to the
    dead-letter topic (reason "processing_error") while its neighbours are stored.
    """
    async def consume(stream) -> None:
        s = context().settings
        async for events in stream.take_events(s.batch_size, within=s.batch_wait_s):
            try:
                await process(events)
            except Exception:
                log.exception("batch of %d failed; isolating the record at fault", len(events))
                await _one_by_one(process, events)
    consume.__name__ = name.replace(".", "_")
    return app.agent(topic(name), name=consume.__name__)(consume)


upload_agent = agent_for(topics.UPLOAD, process_batch)
relay_agent = agent_for(topics.RELAY, process_batch)
commands_agent = agent_for(topics.DEVICE_COMMANDS, process_batch)
