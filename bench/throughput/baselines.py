"""The raw baseline, on the same bytes and machine as the pipeline: what reading the messages
and writing their rows cost without anything mdmbus does in between (no decode, validation,
routing, idempotent insert, commit protocol, truncation).

- consume-only: a plain aiokafka consumer reads the produced messages (getmany, no decoding);
- COPY-only: the rows the pipeline would store, built before timing, COPYed into a scratch
  table ``LIKE records INCLUDING DEFAULTS INCLUDING INDEXES`` in the region's database, one
  transaction per MDMBUS_BATCH_SIZE rows, as the pipeline commits a batch;
- the consume -> COPY loop: one process alternating the two (measured, for reference).

baseline = min(consume-only, COPY-only): an ideal pipeline whose two stages overlap fully.
Each result carries the CPU every process spent meanwhile (this one, the broker, PostgreSQL),
so the report can put the baseline's CPU per record beside mdmbus's.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer

from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from bench.support import CpuMeter, Progress, kafka_options, kafka_pid, postgres_pid
from bench.throughput.produce import COPY_COLUMNS, Load, Produced

__all__ = ["Baseline", "consume_only", "copy_only", "consume_copy", "drop_scratch",
           "CONSUME", "COPY", "LOOP", "SCRATCH"]

SCRATCH = "bench_copy"
CONSUME = "consume-only (aiokafka getmany)"
COPY = "COPY-only (same rows, same database)"
LOOP = "consume -> COPY loop (measured)"
#: The CPU meter's name for this process.
CLIENT = "this process (the baseline's client)"


@dataclass
class Baseline:
    name: str
    records: int
    seconds: float
    #: (what, CPU seconds, cores) while it ran, as CpuMeter.stop() gives them.
    cpu: list[tuple[str, float, float]]

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")

    def cpu_us(self, what: str | None = None) -> float:
        """CPU microseconds a record: of one process group, or of every process metered (this
        one, the broker, PostgreSQL; not the rest of the machine)."""
        rows = [(w, s) for w, s, _ in self.cpu if not w.startswith(("rest of", "machine",
                                                                     "  of which"))]
        spent = sum(s for w, s in rows if what is None or w == what)
        return 1e6 * spent / self.records if self.records else float("nan")


async def _meter(stores: Stores, settings: Settings) -> CpuMeter:
    groups = {CLIENT: [os.getpid()]}
    broker = kafka_pid(settings)
    if broker:
        groups["kafka broker"] = [broker]
    return CpuMeter(groups, postmaster=await postgres_pid(stores.directory_pool))


@contextlib.asynccontextmanager
async def _reading(settings: Settings, produced: Produced,
                   what: str) -> AsyncIterator[Callable[..., AsyncIterator[list[Any]]]]:
    """A plain aiokafka consumer at the first produced message of each partition; yields
    ``batches(max_records=None)``, which fetches (getmany) until every produced message was
    read, one list of the fetched messages inside the produced range at a time. The consumer
    is started before the caller's timing begins."""
    consumer = AIOKafkaConsumer(**kafka_options(settings, enable_auto_commit=False))
    await consumer.start()
    try:
        consumer.assign(list(produced.start))
        for tp, offset in produced.start.items():
            consumer.seek(tp, offset)
        left = {tp: produced.end[tp] - produced.start[tp] for tp in produced.start}

        async def batches(max_records: int | None = None) -> AsyncIterator[list[Any]]:
            progress = Progress(what, sum(left.values()))
            n = 0
            while any(v > 0 for v in left.values()):
                got = await consumer.getmany(timeout_ms=1000, max_records=max_records)
                batch: list[Any] = []
                for tp, msgs in got.items():
                    mine = [m for m in msgs if m.offset < produced.end[tp]]
                    left[tp] -= len(mine)
                    batch += mine
                yield batch
                n += len(batch)
                progress.update(n)
        yield batches
    finally:
        await consumer.stop()


async def consume_only(settings: Settings, stores: Stores, produced: Produced) -> Baseline:
    """Plain aiokafka reading the produced messages (getmany, no decoding)."""
    async with _reading(settings, produced, "consume-only") as batches:
        meter = await _meter(stores, settings)
        began = time.perf_counter()
        async for _ in batches():
            pass
        seconds = time.perf_counter() - began
        return Baseline(CONSUME, produced.in_topic, seconds, meter.stop())


async def _scratch(pool: asyncpg.Pool) -> None:
    await pool.execute(f"CREATE TABLE IF NOT EXISTS {SCRATCH} "
                       "(LIKE records INCLUDING DEFAULTS INCLUDING INDEXES)")
    await pool.execute(f"TRUNCATE {SCRATCH}")
    await pool.execute(f"VACUUM ANALYZE {SCRATCH}")


async def drop_scratch(stores: Stores, region: str) -> None:
    await stores.region(region).execute(f"DROP TABLE IF EXISTS {SCRATCH}")


async def copy_only(settings: Settings, stores: Stores, load: Load,
                    batch_size: int) -> Baseline:
    """The load's rows COPYed batch by batch, in production order, one transaction each."""
    pool = stores.region(load.region)
    await _scratch(pool)
    rows = load.rows
    progress = Progress("COPY-only", len(rows))
    async with pool.acquire() as conn:
        meter = await _meter(stores, settings)
        began = time.perf_counter()
        for i in range(0, len(rows), batch_size):
            await conn.copy_records_to_table(SCRATCH, records=rows[i:i + batch_size],
                                             columns=COPY_COLUMNS)
            progress.update(min(len(rows), i + batch_size))
        seconds = time.perf_counter() - began
        return Baseline(COPY, len(rows), seconds, meter.stop())


async def consume_copy(settings: Settings, stores: Stores, load: Load, produced: Produced,
                       batch_size: int) -> Baseline:
    """One loop that reads a batch (getmany) and COPYs its rows: a pipeline worker with no
    decoding, validation, routing or idempotence. Needs ``produced.index``."""
    if produced.index is None:
        raise ValueError("consume_copy needs a production made with index=True")
    pool = stores.region(load.region)
    await _scratch(pool)
    async with pool.acquire() as conn:
        async with _reading(settings, produced, "consume->COPY") as batches:
            meter = await _meter(stores, settings)
            began = time.perf_counter()
            async for batch in batches(batch_size):
                if batch:
                    await conn.copy_records_to_table(
                        SCRATCH, records=[load.rows[produced.index[(m.partition, m.offset)]]
                                          for m in batch], columns=COPY_COLUMNS)
            seconds = time.perf_counter() - began
            return Baseline(LOOP, produced.in_topic, seconds, meter.stop())
