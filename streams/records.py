"""The record processor: upload, relay and command records, stored in their region in one
idempotent transaction a batch (services/stores/records.py). The store decides, in that
transaction, whether the tenant may still be written (rules 4 and 7)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from mdmbus.categories import Category, category_of
from mdmbus.metrics import observe_many
from mdmbus.services.rules.refusals import Refusal, keeps_body, message
from mdmbus.services.rules.session_expiry import COMMAND_FALLBACK
from mdmbus.services.stores.records import StoreRow, write_records
from mdmbus.streams.batch import Processor, Written, residency_route
from mdmbus.streams.classify import Accepted, tenant_uuid
from mdmbus.streams.context import PipelineContext

__all__ = ["records_processor"]


def _row(a: Accepted) -> StoreRow:
    env = a.record["envelope"]
    category = category_of(a.kind)
    deadline = rule = None
    if category is Category.COMMAND:
        # Until its session is known (the store joins it in), a command keeps a fallback.
        deadline, rule = env["event_time"] + COMMAND_FALLBACK, "session_expiry"
    # The ids go to the store as the contract's canonical text (asyncpg encodes text into a
    # uuid column in C); only the tenant, shared by many records, is made a uuid.UUID.
    return StoreRow(env["record_id"], tenant_uuid(env["tenant_id"]), a.kind, category,
                    env.get("device_id"), a.record.get("session_id"), env["event_time"],
                    deadline, rule, a.value)


async def _write(ctx: PipelineContext, region: str | None, items: list[Accepted]) -> Written:
    if region is None:  # residency_route keys every record by its topic's region
        raise ValueError(f"{len(items)} records to write in no region")
    m = ctx.metrics
    rows = [_row(a) for a in items]
    for category, n in Counter(row.category for row in rows).items():
        m.records_routed.labels(region, category).inc(n)
    started = time.perf_counter()
    try:
        async with ctx.stores.region(region).acquire() as conn:
            outcome = await write_records(conn, rows, ctx.clock.now_dt(),
                                          ctx.settings.command_grace_s,
                                          kek=ctx.keyring(region).current())
    except Exception:
        m.store_batches.labels(region, "error").inc()
        raise
    m.store_write_seconds.labels(region).observe(time.perf_counter() - started)
    m.store_batches.labels(region, "ok").inc()
    m.seal_cpu_seconds.labels(region).inc(outcome.seal_cpu_s)

    now = ctx.clock.now()
    # The store answers with (tenant, id) as text; the contract's canonical text of both is the
    # same (lower-case uuids), so the envelope's own strings key the batch, no uuid -> str.
    by_key = {(a.record["envelope"]["tenant_id"], row.record_id): (row, a)
              for row, a in zip(rows, items)}
    # The latencies of a batch go into the histogram at once, a category at a time.
    latency: dict[str, list[float]] = defaultdict(list)
    to_real = ctx.clock.to_real_seconds
    for key in outcome.stored:
        row = by_key[key][0]
        latency[row.category].append(max(0.0, to_real(now - row.event_time.timestamp())))
    for category, seconds in latency.items():
        m.records_stored.labels(region, category).inc(len(seconds))
        observe_many(m.end_to_end_seconds.labels(category), seconds)
    for category, n in Counter(by_key[k][0].category for k in outcome.duplicates).items():
        m.records_duplicate.labels(region, category).inc(n)
    for category, n in Counter(by_key[k][0].category for k in outcome.expired).items():
        m.records_expired.labels(region, category).inc(n)

    written = Written()
    if outcome.in_retention or outcome.not_onboarded or outcome.deleted:
        for keys, reason in ((outcome.in_retention, Refusal.TENANT_IN_RETENTION),
                             (outcome.not_onboarded, Refusal.TENANT_NOT_ONBOARDED),
                             (outcome.deleted, Refusal.TENANT_DELETED)):
            written.refused += [by_key[k][1].refuse(reason, message(reason), keeps_body(reason))
                                for k in keys]
    return written


def records_processor() -> Processor:
    return Processor(route=residency_route, write=_write)
