"""Where refusals go (docs/design.md section 5).

A record refused in a region: its row in the region store's ``dead_letters`` table (the body,
redacted, where :func:`~mdmbus.services.rules.refusals.keeps_body` allows, with a deadline),
then a notice on ``mdm.<region>.deadletter`` carrying the reason, the field, the source offset
and the ids, never a body. A refused lifecycle event (global, no personal data): a row in the
directory's ``lifecycle_refusals``. Both are written once per source message, so a replayed
batch counts and notifies nothing twice; a notice a crash left unsent is sent on the replay.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from typing import Sequence

from mdmbus.contract.retention import NOT_KEPT, WITHHELD
from mdmbus.services.rules.dead_letters import dead_letter_deadline
from mdmbus.services.rules.refusals import keeps_body
from mdmbus.services.stores import dead_letters as store
from mdmbus.streams.classify import RefusedMessage
from mdmbus.streams.context import PipelineContext
from mdmbus.topics import TopicKind, topic_name

__all__ = ["record_refusals", "notice", "HEADER_REASON", "HEADER_SOURCE_TOPIC",
           "HEADER_SOURCE_PARTITION", "HEADER_SOURCE_OFFSET"]

HEADER_REASON = "mdmbus.reason"
HEADER_SOURCE_TOPIC = "mdmbus.source.topic"
HEADER_SOURCE_PARTITION = "mdmbus.source.partition"
HEADER_SOURCE_OFFSET = "mdmbus.source.offset"


def notice(row) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the notice of a stored dead letter: ids, reason, field and
    source, as JSON; never the body, never the error text (it may quote values)."""
    value = {
        "reason": row["reason"], "path": row["path"], "kind": row["kind"],
        "source": {"topic": row["source_topic"], "partition": row["source_partition"],
                   "offset": row["source_offset"]},
        "tenant_id": None if row["tenant_id"] is None else str(row["tenant_id"]),
        "record_id": None if row["record_id"] is None else str(row["record_id"]),
        "body_kept": row["body_kept"], "deadline": row["deadline"].isoformat(),
    }
    headers = [(HEADER_REASON, row["reason"].encode()),
               (HEADER_SOURCE_TOPIC, row["source_topic"].encode()),
               (HEADER_SOURCE_PARTITION, str(row["source_partition"]).encode()),
               (HEADER_SOURCE_OFFSET, str(row["source_offset"]).encode())]
    key = None if row["tenant_id"] is None else str(row["tenant_id"]).encode()
    return key, json.dumps(value, separators=(",", ":")).encode(), headers


async def record_refusals(ctx: PipelineContext, rejected: Sequence[RefusedMessage]) -> None:
    """Stores every refusal where it belongs and sends the notices; returns when both are
    durable (the commit protocol commits the batch's offsets only after this)."""
    by_region: dict[str | None, list[RefusedMessage]] = defaultdict(list)
    for r in rejected:
        by_region[r.region].append(r)
    await asyncio.gather(*(
        _lifecycle(ctx, letters) if region is None else _region(ctx, region, letters)
        for region, letters in by_region.items()))


def _letter(r: RefusedMessage) -> store.DeadLetter:
    """The row of a refusal: its body only where the rule keeps one and it was scanned
    (mdmbus.contract.retention), with why, and the arrived message's length and digest."""
    kept = r.kept
    basis = kept.basis if kept is not None else NOT_KEPT
    body = r.body if keeps_body(r.reason) and kept is not None else None
    if body is None and basis != WITHHELD:
        basis = NOT_KEPT
    return store.DeadLetter(r.topic, r.partition, r.offset, r.reason, r.path, r.error,
                            r.tenant_id, r.record_id, r.kind, body, r.redacted and body is not None,
                            basis, kept.length if kept else 0, kept.sha256 if kept else None)


async def _region(ctx: PipelineContext, region: str, rejected: Sequence[RefusedMessage]) -> None:
    now = ctx.clock.now_dt()
    letters = [_letter(r) for r in rejected]
    async with ctx.stores.region(region).acquire() as conn, conn.transaction():
        new = await store.insert(conn, letters, now,
                                 dead_letter_deadline(now, ctx.settings.dead_letter_days),
                                 kek=ctx.keyring(region).current())
        pending = await store.unnotified(conn, [d.source for d in letters])
    fresh = set(new)
    counted = Counter((r.topic, r.reason) for r in rejected
                      if (r.topic, r.partition, r.offset) in fresh)
    for (topic, reason), n in counted.items():
        ctx.metrics.dead_letters.labels(topic, reason).inc(n)
    if not pending:
        return
    producer = ctx.producers[region]
    topic = topic_name(TopicKind.DEAD_LETTER, region)
    futures = []
    for row in pending:
        key, value, headers = notice(row)
        futures.append(await producer.send(topic, value=value, key=key, headers=headers))
    await asyncio.gather(*futures)
    await store.mark_notified(ctx.stores.region(region),
                              [(r["source_topic"], r["source_partition"], r["source_offset"])
                               for r in pending])


async def _lifecycle(ctx: PipelineContext, rejected: Sequence[RefusedMessage]) -> None:
    rows = await ctx.stores.directory_pool.fetch(
        "INSERT INTO lifecycle_refusals (source_topic, source_partition, source_offset, reason,"
        " error, tenant_id, kind)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[],"
        "   $6::uuid[], $7::text[]) ON CONFLICT DO NOTHING RETURNING source_topic, reason",
        [r.topic for r in rejected], [r.partition for r in rejected],
        [r.offset for r in rejected], [r.reason for r in rejected],
        [r.error for r in rejected], [r.tenant_id for r in rejected],
        [r.kind for r in rejected])
    for (topic, reason), n in Counter((r["source_topic"], r["reason"]) for r in rows).items():
        ctx.metrics.dead_letters.labels(topic, reason).inc(n)
