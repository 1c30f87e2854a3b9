"""The load of a throughput run: N upload messages of one region's tenants, built once in
memory (with the rows the pipeline would store, for the COPY baseline), and produced to the
region's upload topic before each drain (the pipeline truncates what it has committed, so each
run needs its own copy of the same bytes)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from mdmbus.categories import category_of
from mdmbus.clock import Clock
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name
from bench.support import Progress, RecordMix, end_offsets, producer, say

__all__ = ["Load", "Produced", "build_load", "produce", "COPY_COLUMNS"]

#: The columns the COPY baseline writes (as services/stores/records.py's INSERT ... SELECT).
COPY_COLUMNS = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
                "event_time", "stored_at", "deadline", "deadline_rule", "body")


@dataclass
class Load:
    """The messages of a run, in production order, and the row each becomes."""

    region: str
    topic: str
    #: (key, value) of each message.
    messages: list[tuple[bytes, bytes]] = field(repr=False)
    #: The store row of each message (COPY_COLUMNS), built before any timing.
    rows: list[tuple] = field(repr=False)
    bytes: int = 0

    @property
    def count(self) -> int:
        return len(self.messages)


@dataclass
class Produced:
    """Where one production of (part of) a load is in the topic."""

    topic: str
    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]
    count: int
    seconds: float
    #: The index in the load of the first message produced.
    first: int = 0
    #: (partition, offset) -> index in the load (with ``index=True``).
    index: dict[tuple[int, int], int] | None = field(default=None, repr=False)

    @property
    def in_topic(self) -> int:
        return sum(self.end[tp] - self.start[tp] for tp in self.end)


def _row(kind: str, record: dict[str, Any], value: bytes, now: dt.datetime) -> tuple:
    """The row the pipeline stores for an upload record (COPY_COLUMNS), built from the record
    before encoding, so the baseline never decodes."""
    env = record["envelope"]
    device = env.get("device_id")
    return (uuid.UUID(env["record_id"]), uuid.UUID(env["tenant_id"]), kind,
            str(category_of(kind)), None if device is None else uuid.UUID(device), None,
            dt.datetime.fromtimestamp(env["event_time"] / 1000, dt.timezone.utc), now, None,
            None, value)


def build_load(mix: RecordMix, n: int, clock: Clock, region: str, rows: bool = True) -> Load:
    """``n`` upload messages of ``mix`` (whose tenants are all in ``region``)."""
    topic = topic_name(TopicKind.UPLOAD, region)
    messages: list[tuple[bytes, bytes]] = []
    out_rows: list[tuple] = []
    size = 0
    now = clock.now_dt()
    progress = Progress("built", n)
    for i in range(n):
        kind, record = mix.make(clock.now_ms())
        to, key, value = mix.encode(kind, record)
        if to != topic:
            raise ValueError(f"a record of the load goes to {to}, not {topic}: every tenant of "
                             f"the load must be in {region}")
        messages.append((key, value))
        if rows:
            out_rows.append(_row(kind, record, value, now))
        size += len(value)
        progress.update(i + 1)
    return Load(region, topic, messages, out_rows, size)


async def produce(settings: Settings, load: Load, first: int = 0, count: int | None = None,
                  index: bool = False, label: str = "produced") -> Produced:
    """Produces messages ``first`` .. ``first + count`` of the load (acks=all, idempotent,
    in order); with ``index``, remembers where each one went."""
    count = load.count - first if count is None else min(count, load.count - first)
    start = await end_offsets(settings, load.topic)
    prod = producer(settings, linger_ms=20, max_batch_size=256 * 1024)
    await prod.start()
    where: dict[tuple[int, int], int] | None = {} if index else None
    pending: list[tuple[Any, int]] = []
    progress = Progress(label, count)
    began = time.perf_counter()

    async def settle() -> None:
        for fut, i in pending:
            meta = await fut
            if where is not None:
                where[(meta.partition, meta.offset)] = i
        pending.clear()

    try:
        for i in range(first, first + count):
            key, value = load.messages[i]
            pending.append((await prod.send(load.topic, value=value, key=key), i))
            if len(pending) >= 10_000:
                await settle()
                progress.update(i + 1 - first)
        await prod.flush()
        await settle()
    finally:
        await prod.stop()
    seconds = time.perf_counter() - began
    progress.update(count, force=True)
    end = await end_offsets(settings, load.topic)
    produced = Produced(load.topic, start, end, count, seconds, first, where)
    if produced.in_topic != count:
        say(f"  warning: {load.topic} grew by {produced.in_topic:,}, not {count:,}: another "
            "producer writes to it; the figures include its records")
    return produced
