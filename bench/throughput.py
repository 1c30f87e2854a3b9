"""End-to-end throughput: mdm.upload -> durable rows in the region stores, against a raw baseline.

    python -m bench.throughput [--records N] [--workers 1|2] [--profile] [--tenants T]

1. Pre-produces N upload records (kinds U1..U14 in bench.support.UPLOAD_MIX proportions, for T
   fresh tenants over the three regions) to mdm.upload, before any worker runs.
2. Points the pipeline's consumer group at the first of them, starts the pipeline worker(s)
   (`mdmbus process pipeline`: decode, validate, route, idempotent write), and waits until the
   group's committed offsets reach the end. The rate is taken from the stores: the records
   stored divided by the time from the first stored row to the last (stored_at_real); the rate
   between the 10th and the 90th percentile of the stored rows is printed too (start-up and
   tail left out).
3. With --workers 2, the same bytes again with two workers in the same consumer group (the rows
   of the first run are deleted and the table vacuumed first, so both runs start alike).
4. With --profile, the last --profile-records of the same bytes again, one worker under
   pyinstrument; prints where its main thread spends its time (the session file is kept under
   $MDMBUS_STATE_DIR/bench-logs/). Then the pipeline's own steps are timed one by one in this
   process on --stages of the messages, and the same batch function (process_batch) is run
   fed by plain aiokafka, without faust (--no-reference skips it): together they say how much
   of the worker's time is faust's and how much is mdmbus's.
5. The raw baseline on the same bytes and machine: consume-only (aiokafka getmany of the same
   messages, no decoding), COPY-only (the equivalent rows, built before timing, COPYed into a
   scratch table shaped like `records` -- same columns, defaults and indexes -- in the same
   region databases, one transaction per region per batch of MDMBUS_BATCH_SIZE, as the
   pipeline), and the two as one consume -> COPY loop.

   baseline = min(consume-only, COPY-only): an ideal pipeline whose two stages overlap fully,
   bounded by the slower one. It is the strictest of the three (see BENCHMARKS.md); the ratio
   mdmbus / baseline is printed against it (target >= 0.5), and against the serial sum
   (1 / (1/consume + 1/COPY)) and the measured loop for reference.
6. The ceiling of faust's own per-event machinery (--no-noop skips it): the last
   --noop-records of the same messages are copied, partition for partition, to a scratch topic
   with as many partitions as mdm.upload, and drained by a faust worker whose one agent does no
   work (bench.faust_noop: the pipeline's App class, a fresh consumer group, take_events with
   the pipeline's batch size and wait; it only counts the events). Its rate from its first
   batch to its last, and its process's CPU per record over the same span, are printed beside
   the reference run of process_batch without faust: how fast a faust agent can go before
   mdmbus does any work. The scratch topic is deleted afterwards.

The rows the benchmark stored, its tenants and its scratch tables are deleted at the end
(--keep leaves them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code
from aiokafka.structs import TopicPartition

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.settings import Settings
from bench.support import (PIPELINE_GROUP, PIPELINE_TOPICS, CpuMeter, Processes, Progress,
                           RecordMix, Tenants, check_stack, close_pools, committed,
                           delete_tenants, end_offsets, fast_forward, forget_rows, kafka_pid,
                           machine, onboard_tenants, percentile, postgres_pid, producer,
                           region_pools, say, table, run_cli)

__all__ = ["main", "Produced", "produce", "drain", "DrainResult"]

SCRATCH = "bench_copy"
#: The reference row of the faust worker doing no work (bench.faust_noop).
NOOP = "reference: faust agent doing no work"
GETMANY = "reference: process_batch fed by getmany (no faust)"
GETMANY_2 = "reference: process_batch fed by getmany, 2 processes"
#: The no-op worker is killed when it has not finished NOOP_STARTUP_S + records / NOOP_MIN_RATE
#: seconds after its start (it starts in ~10 s and counts well over 1,000 records/s).
NOOP_STARTUP_S = 60.0
NOOP_MIN_RATE = 1_000
COPY_COLUMNS = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
                "event_time", "stored_at", "deadline", "deadline_rule", "body")


@dataclass
class Produced:
    """What was produced: where it is in mdm.upload and the equivalent store rows."""

    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]
    count: int
    bytes: int
    seconds: float
    #: (partition, offset) -> (region, row): the row the pipeline would store, for the baseline.
    rows: dict[tuple[int, int], tuple[str, tuple]] = field(repr=False)


@dataclass
class DrainResult:
    label: str
    workers: int
    stored: int
    first: float
    last: float
    p10: float
    p90: float
    wall: float
    cpu: list[tuple[str, float, float]]
    #: records committed while the CPU meter ran (first commit -> last)
    cpu_records: int

    @property
    def rate(self) -> float:
        return self.stored / (self.last - self.first) if self.last > self.first else float("nan")

    @property
    def steady_rate(self) -> float:
        return 0.8 * self.stored / (self.p90 - self.p10) if self.p90 > self.p10 else float("nan")


def _row(kind: str, record: dict[str, Any], value: bytes, now: dt.datetime) -> tuple:
    """The row streams/ingest.py stores for an upload record (built here from the record
    before encoding, so the baseline never decodes)."""
    env = record["envelope"]
    device = env.get("device_id")
    return (uuid.UUID(env["record_id"]), uuid.UUID(env["tenant_id"]), kind, "upload",
            None if device is None else uuid.UUID(device), None,
            dt.datetime.fromtimestamp(env["event_time"] / 1000, dt.timezone.utc), now, None,
            None, value)


async def produce(settings: Settings, mix: RecordMix, tenants: Tenants, n: int,
                  clock: Clock, keep_rows: bool = True) -> Produced:
    start = await end_offsets(settings, topics.UPLOAD)
    prod = producer(settings, linger_ms=20, max_batch_size=256 * 1024)
    await prod.start()
    rows: dict[tuple[int, int], tuple[str, tuple]] = {}
    pending: list[tuple[Any, str, tuple | None]] = []
    progress = Progress("produced", n)
    size = 0
    began = time.perf_counter()
    now = clock.now_dt()

    async def settle() -> None:
        for fut, region, row in pending:
            meta = await fut
            if row is not None:
                rows[(meta.partition, meta.offset)] = (region, row)
        pending.clear()

    try:
        for i in range(n):
            kind, record = mix.make(clock.now_ms())
            topic, key, value = mix.encode(kind, record)
            size += len(value)
            fut = await prod.send(topic, value=value, key=key)
            row = _row(kind, record, value, now) if keep_rows else None
            pending.append((fut, tenants.region_of[record["envelope"]["tenant_id"]], row))
            if len(pending) >= 10_000:
                await settle()
                progress.update(i + 1)
        await prod.flush()
        await settle()
    finally:
        await prod.stop()
    seconds = time.perf_counter() - began
    progress.update(n, force=True)
    end = await end_offsets(settings, topics.UPLOAD)
    in_topic = sum(end[tp] - start[tp] for tp in end)
    if in_topic != n:
        say(f"  warning: mdm.upload grew by {in_topic:,}, not {n:,}: another producer writes "
            "to it; figures will include its records")
    return Produced(start, end, n, size, seconds, rows)


def _last(produced: Produced, n: int) -> Produced:
    """The last ``n`` of the produced records (about: each partition's share of them)."""
    total = sum(produced.end[tp] - produced.start[tp] for tp in produced.end)
    if n >= total:
        return produced
    start = {tp: produced.end[tp] - round((produced.end[tp] - produced.start[tp]) * n / total)
             for tp in produced.end}
    return replace(produced, start=start, count=sum(produced.end[tp] - start[tp]
                                                     for tp in start))


async def _stored_times(pools: dict[str, asyncpg.Pool], tenants: Tenants) -> list[float]:
    times: list[float] = []
    for region, pool in pools.items():
        ids = tenants.in_region(region)
        if ids:
            rows = await pool.fetch("SELECT extract(epoch FROM stored_at_real)::float8 AS t"
                                    " FROM records WHERE tenant_id = ANY($1::uuid[])", ids)
            times += [r["t"] for r in rows]
    return times


async def drain(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: Tenants,
                produced: Produced, workers: int, label: str, profile_to: Path | None = None,
                stall_s: float = 120.0) -> DrainResult:
    """Starts ``workers`` pipeline workers on the produced records and waits until they have
    committed all of them; the stores' timestamps give the rate."""
    await fast_forward(settings, PIPELINE_GROUP, PIPELINE_TOPICS, start=produced.start)
    procs = Processes(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    tps = sorted(produced.end, key=lambda tp: tp.partition)
    total = sum(produced.end[tp] - produced.start[tp] for tp in tps)
    say(f"{label}: {workers} worker(s) on {total:,} records (logs in {procs.log_dir})")
    began = time.monotonic()
    try:
        for i in range(workers):
            procs.start("pipeline", label=f"pipeline-{i + 1}",
                        profile_to=profile_to if i == 0 else None)
        postmaster = await postgres_pid(pools)
        kafka = [p for p in [kafka_pid(settings)] if p]
        progress: Progress | None = None
        meter: CpuMeter | None = None
        metered_from = 0
        last_done, last_change = -1, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            procs.check_alive()
            offsets = await committed(admin, PIPELINE_GROUP, tps)
            done = sum(max(0, offsets[tp] - produced.start[tp]) for tp in tps)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            if done and progress is None:
                say(f"  first commit after {time.monotonic() - began:.1f} s (worker start-up)")
                progress = Progress(label, total, done=done)
                # CPU is metered from the first commit on: start-up (imports, connections,
                # the group join) is left out, the steady drain is what is divided per record
                meter = CpuMeter({"pipeline worker(s)": [p.pid for p in procs.procs.values()],
                                  "kafka broker": kafka}, postmaster=postmaster,
                                 threads_of=procs.pid("pipeline-1") if workers == 1 else None)
                metered_from = done
            if progress:
                progress.update(done)
            if done >= total:
                break
            if time.monotonic() - last_change > stall_s:
                raise RuntimeError(f"no progress for {stall_s:.0f} s at {done:,}/{total:,}; "
                                   f"see {procs.log_dir}")
        cpu = meter.stop() if meter else []
        cpu_records = total - metered_from
    finally:
        procs.stop()
        await admin.close()
    wall = time.monotonic() - began
    times = sorted(await _stored_times(pools, tenants))
    if len(times) < total:
        say(f"  warning: {total - len(times):,} records were not stored (dead letters? see "
            f"{procs.log_dir})")
    result = DrainResult(label, workers, len(times), times[0] if times else 0.0,
                         times[-1] if times else 0.0, percentile(times, 10),
                         percentile(times, 90), wall, cpu, cpu_records)
    say(f"  {result.stored:,} stored in {result.last - result.first:.1f} s: "
        f"{result.rate:,.0f} records/s")
    return result


# ----------------------------------------------------------------------------- baseline

@contextlib.asynccontextmanager
async def _reading(settings: Settings, produced: Produced,
                   what: str) -> AsyncIterator[Callable[..., AsyncIterator[list[Any]]]]:
    """A plain aiokafka consumer at the first produced message of each partition; yields
    ``batches(max_records=None)``, which fetches (getmany) until every produced message was
    read, one list of the fetched messages inside the produced range at a time, with progress
    on stderr under ``what``. The consumer is started before the caller's timing begins."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False)
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


async def consume_only(settings: Settings, produced: Produced) -> float:
    """Seconds for plain aiokafka to read the produced messages (getmany, no decoding)."""
    async with _reading(settings, produced, "consume-only") as batches:
        began = time.perf_counter()
        async for _ in batches():
            pass
        return time.perf_counter() - began


async def _scratch(pools: dict[str, asyncpg.Pool]) -> None:
    for pool in pools.values():
        await pool.execute(f"CREATE TABLE IF NOT EXISTS {SCRATCH} "
                           "(LIKE records INCLUDING DEFAULTS INCLUDING INDEXES)")
        await pool.execute(f"TRUNCATE {SCRATCH}")


async def _copy_batch(conns: dict[str, asyncpg.Connection],
                      batch: list[tuple[str, tuple]]) -> None:
    by_region: dict[str, list[tuple]] = defaultdict(list)
    for region, row in batch:
        by_region[region].append(row)
    for region, rows in by_region.items():
        await conns[region].copy_records_to_table(SCRATCH, records=rows, columns=COPY_COLUMNS)


async def copy_only(pools: dict[str, asyncpg.Pool], produced: Produced,
                    batch_size: int) -> tuple[float, float, float]:
    """Seconds to COPY the equivalent rows, batch by batch, in production order; and the CPU
    seconds of this process (asyncpg) and of PostgreSQL meanwhile."""
    await _scratch(pools)
    rows = list(produced.rows.values())
    conns = {r: await p.acquire() for r, p in pools.items()}
    progress = Progress("COPY-only", len(rows))
    try:
        meter = CpuMeter({}, postmaster=await postgres_pid(pools))
        cpu = time.process_time()
        began = time.perf_counter()
        for i in range(0, len(rows), batch_size):
            await _copy_batch(conns, rows[i:i + batch_size])
            progress.update(i + batch_size)
        seconds = time.perf_counter() - began
        pg = next(s for what, s, _ in meter.stop() if what == "postgres")
        return seconds, time.process_time() - cpu, pg
    finally:
        for r, c in conns.items():
            await pools[r].release(c)


async def consume_copy(settings: Settings, pools: dict[str, asyncpg.Pool], produced: Produced,
                       batch_size: int) -> float:
    """Seconds for one loop that reads a batch (getmany) and COPYs its rows, like a pipeline
    worker with no decoding, validation or routing."""
    await _scratch(pools)
    conns = {r: await p.acquire() for r, p in pools.items()}
    try:
        async with _reading(settings, produced, "consume->COPY") as batches:
            began = time.perf_counter()
            async for batch in batches(batch_size):
                if batch:
                    await _copy_batch(conns, [produced.rows[(m.partition, m.offset)]
                                              for m in batch])
            return time.perf_counter() - began
    finally:
        for r, c in conns.items():
            await pools[r].release(c)


async def process_batch_without_faust(settings: Settings, produced: Produced
                                      ) -> tuple[float, float]:
    """(start, end) wall-clock times (time.time()) of the consume -> COPY loop's shape with the
    pipeline's own batch function (streams.ingest.process_batch: classify, route, idempotent
    write, metrics) in place of the COPY: the pipeline's work without faust's stream
    machinery. The rows must not be stored."""
    from types import SimpleNamespace

    from mdmbus.streams.app import context
    from mdmbus.streams.ingest import process_batch

    try:
        await context().ready()
        async with _reading(settings, produced, "process_batch without faust") as batches:
            began = time.time()
            async for batch in batches(settings.batch_size):
                if batch:
                    await process_batch([SimpleNamespace(message=m) for m in batch])
            return began, time.time()
    finally:
        if context().stores is not None:
            await context().stores.close()
            context().stores = None


async def process_batch_in_processes(settings: Settings, produced: Produced,
                                     processes: int) -> float:
    """Seconds from the first start to the last end of ``processes`` runs of
    process_batch_without_faust (bench/getmany_worker.py), each on its share of the partitions,
    side by side: how far the pipeline's own work goes without faust on this machine."""
    from bench import getmany_worker

    tps = sorted(produced.start, key=lambda tp: tp.partition)
    shares = [tps[i::processes] for i in range(processes)]
    deadline = time.monotonic() + 120 + produced.count / 2_000
    procs = []
    log_dir = settings.state_dir / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i, share in enumerate(shares):
            ranges = {tp.partition: [produced.start[tp], produced.end[tp]] for tp in share}
            env = dict(os.environ, **{getmany_worker.ENV_RANGES: json.dumps(ranges)})
            log = open(log_dir / f"getmany-worker-{i + 1}.log", "w")
            procs.append((subprocess.Popen([sys.executable, "-m", "bench.getmany_worker"],
                                           env=env, stdout=subprocess.PIPE, stderr=log,
                                           cwd=Path(__file__).resolve().parent.parent), log))
        while any(p.poll() is None for p, _ in procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the getmany workers had not finished by the deadline; "
                                   f"logs in {log_dir}/getmany-worker-*.log")
            await asyncio.sleep(0.2)
        spans = []
        for p, _ in procs:
            out = p.stdout.read().decode() if p.stdout else ""
            result = [line.split() for line in out.splitlines()
                      if line.startswith(getmany_worker.RESULT)]
            if p.returncode != 0 or not result:
                raise RuntimeError(f"a getmany worker failed (exit {p.returncode}); logs in "
                                   f"{log_dir}/getmany-worker-*.log")
            spans.append((float(result[-1][1]), float(result[-1][2])))
        return max(end for _, end in spans) - min(start for start, _ in spans)
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()


# ----------------------------------------------------------------------------- faust, no work

async def _copy_messages(settings: Settings, produced: Produced, topic: str) -> int:
    """Copies the produced messages to ``topic``, partition for partition, with the same keys
    and values; returns how many the topic holds."""
    prod = producer(settings, linger_ms=20, max_batch_size=256 * 1024)
    await prod.start()
    try:
        async with _reading(settings, produced, f"copy to {topic}") as batches:
            async for batch in batches():
                sent = [await prod.send(topic, value=m.value, key=m.key, partition=m.partition)
                        for m in batch]
                for fut in sent:
                    await fut
    finally:
        await prod.stop()
    copied = await end_offsets(settings, topic, [tp.partition for tp in produced.start])
    return sum(copied.values())


def _check(response: Any, what: str) -> None:
    """Raises on the first topic error of a CreateTopics / DeleteTopics response."""
    errors = (response.topic_errors if hasattr(response, "topic_errors")
              else response.topic_error_codes)
    for topic, code, *_ in errors:
        if code:
            raise RuntimeError(f"{what} {topic}: {for_code(code).__name__}")


async def faust_noop(settings: Settings, produced: Produced,
                     faust_monitor: bool = False) -> tuple[float, float]:
    """records/s and CPU us/record of a faust worker whose agent does no work
    (bench.faust_noop), on a scratch topic holding a copy of the produced messages, from its
    first batch to its last; the worker is killed when it has not finished in time. With
    ``faust_monitor``, on faust's default Monitor instead of the pipeline's QuietMonitor."""
    from bench import faust_noop as noop  # names only: faust is imported by the worker

    run_id = uuid.uuid4().hex[:10]
    topic = f"bench.noop.{run_id}"
    app_id = f"bench-noop-{run_id}"  # a fresh consumer group
    partitions = sorted(tp.partition for tp in produced.end)
    log_dir = noop.datadir(settings.state_dir, app_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "worker.log"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    proc: subprocess.Popen | None = None
    try:
        _check(await admin.create_topics([NewTopic(topic, len(partitions), 1)]), "create topic")
        n = await _copy_messages(settings, produced, topic)
        expected = sum(produced.end[tp] - produced.start[tp] for tp in produced.end)
        if n != expected:
            raise RuntimeError(f"{topic} holds {n:,} messages, not {expected:,}")
        deadline = NOOP_STARTUP_S + n / NOOP_MIN_RATE
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{
            noop.ENV_TOPIC: topic, noop.ENV_RECORDS: str(n), noop.ENV_APP_ID: app_id,
            # the worker's own watchdog, for when this process is gone; this one kills it first
            noop.ENV_DEADLINE: repr(deadline + 30),
            noop.ENV_MONITOR: "faust" if faust_monitor else "quiet"})
        say(f"faust no-op worker on {n:,} records of {topic} (log {log_path}) ...")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bench.faust_noop"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        began = time.monotonic()
        tps = [TopicPartition(topic, p) for p in partitions]
        progress: Progress | None = None
        while proc.poll() is None:
            if time.monotonic() - began > deadline:
                _end(proc)
                raise RuntimeError(f"the faust no-op worker had not finished after "
                                   f"{deadline:.0f} s (start-up {NOOP_STARTUP_S:.0f} s + "
                                   f"{NOOP_MIN_RATE:,} records/s): killed it; see {log_path}")
            await asyncio.sleep(0.5)
            done = sum((await committed(admin, app_id, tps)).values())
            if done and progress is None:
                say(f"  first commit after {time.monotonic() - began:.1f} s (worker start-up)")
                progress = Progress("faust no-op", n, done=done)
            if progress:
                progress.update(done)
        lines = [line for line in log_path.read_text(errors="replace").splitlines()
                 if line.startswith(noop.RESULT + " ")]
        if proc.returncode != 0 or not lines:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the faust no-op worker exited with {proc.returncode} without "
                               f"a result; last lines of {log_path}:\n{tail}")
        events, timed, seconds, cpu, batches, main = (float(v) for v in lines[-1].split()[1:])
        if not timed:
            raise RuntimeError(f"all {events:,.0f} events came in the first batch: too few "
                               "to time (--noop-records)")
        rate, cpu_us = timed / seconds, 1e6 * cpu / timed
        say(f"  {events:,.0f} events counted; {timed:,.0f} after the first batch, in "
            f"{batches:,.0f} batches ({timed / batches:,.0f} events each on average), in "
            f"{seconds:.1f} s: {rate:,.0f} records/s, {cpu_us:.1f} CPU us/record (main thread "
            f"{1e6 * main / timed:.1f})")
        return rate, cpu_us
    finally:
        if proc is not None:
            _end(proc)
        leader = f"{app_id}-__assignor-__leader"  # faust's own topic of the group
        try:
            made = [t for t in (topic, leader) if t in set(await admin.list_topics())]
            if made:
                _check(await admin.delete_topics(made), "delete topic")
        finally:
            await admin.close()


def _end(proc: subprocess.Popen) -> None:
    """SIGKILL: the worker holds nothing worth a graceful stop (memory store, a throwaway
    group on a topic about to be deleted)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# ----------------------------------------------------------------------------- stages

async def stage_costs(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: Tenants,
                      produced: Produced, sample: int) -> list[tuple[str, float, float]]:
    """The pipeline's own per-record steps, timed one by one in this process on the first
    ``sample`` produced messages, with the pipeline's own functions: (stage, CPU us/record,
    wall us/record). The rows must not be in the stores (the write is timed as new rows).
    What streams.ingest._store adds around the write (its metrics, the outcome) is not in
    here: it shows in the difference to the worker's measured CPU."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from mdmbus.contract import default_registry, validate_decoded
    from mdmbus.metrics import Metrics
    from mdmbus.services.stores.records import write_records
    from mdmbus.streams.classify import classify_events
    from mdmbus.streams.ingest import _row  # the row the pipeline stores (imports the faust app)

    registry = default_registry()
    metrics = Metrics(CollectorRegistry())
    items = list(produced.rows.items())[:sample]
    n = len(items)
    msgs = [(p, o, row[-1], str(row[1]).encode()) for (p, o), (_, row) in items]
    out: list[tuple[str, float, float]] = []

    def timed(name: str, fn, rounds: int = 3) -> Any:
        """The best of ``rounds`` (the least disturbed by the rest of the machine)."""
        best_cpu = best_wall = float("inf")
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            result = fn()
            best_cpu = min(best_cpu, time.process_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
        out.append((name, 1e6 * best_cpu / n, 1e6 * best_wall / n))
        return result

    decoded = timed("decode (mdmbus.codec)",
                    lambda: [registry.codec.decode(v) for _, _, v, _ in msgs])
    timed("validate (mdmbus.contract.validate_decoded)",
          lambda: [validate_decoded(k, r, registry) for k, r in decoded])
    events = [SimpleNamespace(message=SimpleNamespace(topic=topics.UPLOAD, partition=p, offset=o,
                                                      key=key, value=v))
              for p, o, v, key in msgs]
    accepted, rejected = timed(
        "classify_events: decode + validate + checks + its metrics (streams.classify)",
        lambda: classify_events(registry, metrics, events))
    if rejected:
        raise RuntimeError("a benchmark record was refused by classify_events()")
    region_of = {uuid.UUID(t): r for t, r in tenants.region_of.items()}

    def route_and_rows() -> dict[str, list]:
        {a.tenant_id for a in accepted}  # as streams.ingest.route does
        by_region: dict[str, list] = defaultdict(list)
        for a in accepted:
            by_region[region_of[a.tenant_id]].append(a)
        return {r: [_row(a) for a in batch] for r, batch in by_region.items()}
    rows_by_region = timed("route + build rows (streams.ingest)", route_and_rows)

    # the write, batch by batch as the pipeline: a batch of batch_size messages, one
    # transaction per region
    order = [(r, row) for r, rows in rows_by_region.items() for row in rows]
    random.Random(0).shuffle(order)
    postmaster = await postgres_pid(pools)
    conns = {r: await p.acquire() for r, p in pools.items()}
    try:
        meter = CpuMeter({}, postmaster=postmaster)
        cpu, wall = time.process_time(), time.perf_counter()
        now = dt.datetime.now(dt.timezone.utc)
        for i in range(0, n, settings.batch_size):
            by_region: dict[str, list] = defaultdict(list)
            for r, row in order[i:i + settings.batch_size]:
                by_region[r].append(row)
            for r, rows in by_region.items():
                outcome = await write_records(conns[r], rows, now, settings.command_grace_s)
                if len(outcome.stored) != len(rows):
                    raise RuntimeError("the rows to write were already in the store")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        pg = next(s for what, s, _ in meter.stop() if what == "postgres")
    finally:
        for r, c in conns.items():
            await pools[r].release(c)
    out.append(("idempotent write (write_records): client side", 1e6 * cpu / n, 1e6 * wall / n))
    out.append(("idempotent write: PostgreSQL backends", 1e6 * pg / n, float("nan")))
    return out


# ----------------------------------------------------------------------------- profile

_COMPONENTS = (
    # (what, substring of the frame's file path or function), first match wins
    ("waiting on I/O (event loop idle)", ("selectors.py", "select")),
    ("decode: mdmbus.codec + fastavro", ("mdmbus/codec.py", "fastavro")),
    ("validate: mdmbus.contract", ("mdmbus/contract",)),
    ("asyncpg client (COPY, queries)", ("asyncpg",)),
    ("prometheus metrics", ("prometheus_client",)),
    ("uuid / datetime conversions", ("uuid.py",)),
    ("dead letters", ("streams/dead_letter.py",)),
    ("kafka client (aiokafka)", ("aiokafka",)),
    ("faust / mode runtime", ("/faust/", "/mode/")),
    ("mdmbus streams/ (own code)", ("streams/",)),
    ("mdmbus services/ (own code)", ("services/",)),
    ("asyncio runtime", ("asyncio",)),
)


def _component(stack: list[str]) -> str:
    """The component a sample is charged to: the innermost frame that belongs to one."""
    for frame in reversed(stack):
        func, _, rest = frame.partition("\x00")
        path = rest.split("\x00", 1)[0]
        for name, needles in _COMPONENTS:
            for needle in needles:
                if needle == "select" and func == "select" and "selectors" in path:
                    return name
                if needle != "select" and needle in path:
                    return name
    return "other"


def summarize_profile(path: Path, top: int = 15) -> None:
    """Prints the main thread's time by component and the functions with the most self time."""
    from pyinstrument.session import Session
    session = Session.load(path)
    records = session.frame_records
    # the drain only: from the first sample inside the agent's batch function to the last
    # (start-up -- imports, connections, the group join -- and shutdown are left out)
    busy = [i for i, (stack, _) in enumerate(records)
            if any(f.startswith("process_batch\x00") for f in stack)]
    if busy:
        left_out = sum(t for _, t in records[:busy[0]]) + sum(t for _, t in records[busy[-1] + 1:])
        records = records[busy[0]:busy[-1] + 1]
    else:
        left_out = 0.0
    by_component: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0.0
    for stack, seconds in records:
        total += seconds
        by_component[_component(stack)] += seconds
        leaf = stack[-1].split("\x01", 1)[0]
        func, _, rest = leaf.partition("\x00")
        file, _, line = rest.partition("\x00")
        self_time[f"{func} ({_short(file)}:{line})"] += seconds
        seen = set()
        for frame in stack:
            f, _, r = frame.split("\x01", 1)[0].partition("\x00")
            name = f"{f} ({_short(r.split(chr(0))[0])})"
            if name not in seen:
                seen.add(name)
                cumulative[name] += seconds
    table(["component (innermost frame)", "seconds", "share"],
          [(c, s, f"{100 * s / total:.1f}%") for c, s in by_component.most_common()],
          title=f"Profile of the worker's main thread while it drained the topic: "
                f"{total:.1f} s (start-up and shutdown, {left_out:.1f} s, left out; "
                f"pyinstrument, {path})")
    table(["function (self time)", "seconds", "share"],
          [(f, s, f"{100 * s / total:.1f}%") for f, s in self_time.most_common(top)],
          title="Top functions by self time")
    entry = ("(mdmbus/cli.py)", "(mdmbus/processes.py)", "(streams/worker.py)")
    interesting = [(f, s) for f, s in cumulative.most_common(400)
                   if any(k in f for k in ("streams/", "services/", "mdmbus/", "asyncpg",
                                           "fastavro", "prometheus"))
                   and not f.endswith(entry)]
    table(["function (cumulative, mdmbus and the libraries it calls)", "seconds", "share"],
          [(f, s, f"{100 * s / total:.1f}%") for f, s in interesting[:top]],
          title="Top functions by cumulative time")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# ----------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    if args.seed is None:
        args.seed = random.SystemRandom().getrandbits(32)
    print(f"machine: {machine()}")
    print(f"settings: MDMBUS_BATCH_SIZE={settings.batch_size} MDMBUS_BATCH_WAIT="
          f"{settings.batch_wait_s} s, {args.records:,} records, "
          f"{args.tenants} tenants (seed {args.seed}), Kafka {settings.kafka_bootstrap}, "
          f"PostgreSQL {settings.pg_host}:{settings.pg_port}")
    pools = await region_pools(settings, max_size=3)
    rng = random.Random(args.seed)
    clock = Clock(1.0, time.time())
    tenants = await onboard_tenants(pools, args.tenants, clock.now_dt(), rng)
    try:
        for pool in pools.values():
            await pool.execute("VACUUM ANALYZE records")
        mix = RecordMix(tenants, seed=args.seed)
        say(f"producing {args.records:,} records to {topics.UPLOAD} ...")
        produced = await produce(settings, mix, tenants, args.records, clock)
        say(f"  {produced.count / produced.seconds:,.0f} records/s produced, "
            f"{produced.bytes / produced.count:.0f} bytes each on average")

        runs: list[DrainResult] = []
        plan = [(1, "1 worker", None)]
        if args.workers == 2:
            plan.append((2, "2 workers", None))
        if args.profile:
            profile_to = (settings.state_dir / "bench-logs" /
                          f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.pyisession")
            plan.append((1, f"1 worker under pyinstrument "
                            f"({min(args.profile_records, args.records):,} records)", profile_to))
        for i, (workers, label, profile_to) in enumerate(plan):
            if i:
                await forget_rows(pools, tenants)
            on = _last(produced, args.profile_records) if profile_to else produced
            runs.append(await drain(settings, pools, tenants, on, workers, label,
                                    profile_to, args.stall))

        baseline: dict[str, float] = {}
        copy_cpu = (float("nan"), float("nan"))
        if not args.no_baseline:
            say("baseline on the same bytes ...")
            n = produced.count
            baseline["consume-only (aiokafka getmany)"] = n / await consume_only(settings, produced)
            seconds, client, pg = await copy_only(pools, produced, settings.batch_size)
            baseline["COPY-only (same rows, same dbs)"] = n / seconds
            copy_cpu = (1e6 * client / n, 1e6 * pg / n)
            baseline["consume -> COPY loop (measured)"] = n / await consume_copy(
                settings, pools, produced, settings.batch_size)
        if args.reference:
            say("reference: the pipeline's process_batch fed by plain aiokafka, no faust ...")
            await forget_rows(pools, tenants)
            began, ended = await process_batch_without_faust(settings, produced)
            stored = len(await _stored_times(pools, tenants))
            if stored < produced.count:
                say(f"  warning: only {stored:,} of {produced.count:,} stored")
            baseline[GETMANY] = stored / (ended - began)
            if args.workers == 2:
                say("reference: the same in two processes, each on half the partitions ...")
                await forget_rows(pools, tenants)
                try:
                    seconds = await process_batch_in_processes(settings, produced, 2)
                except RuntimeError as exc:
                    say(f"  FAILED, the report goes on without it: {exc}")
                else:
                    stored = len(await _stored_times(pools, tenants))
                    if stored < produced.count:
                        say(f"  warning: only {stored:,} of {produced.count:,} stored")
                    baseline[GETMANY_2] = stored / seconds
        noop_cpu = float("nan")
        noop_failed = None
        if args.noop:
            on = _last(produced, args.noop_records)
            say(f"reference: a faust agent doing no work, on the last {on.count:,} messages ...")
            try:
                baseline[NOOP], noop_cpu = await faust_noop(settings, on,
                                                            args.noop_faust_monitor)
            except RuntimeError as exc:
                noop_failed = str(exc).splitlines()[0]
                say(f"  FAILED, the report goes on without it: {exc}")
        stages: list[tuple[str, float, float]] = []
        if args.stages:
            say("timing the pipeline's own steps one by one ...")
            await forget_rows(pools, tenants)
            stages = await stage_costs(settings, pools, tenants, produced,
                                       min(args.stages, produced.count))
        await _report(args, settings, produced, runs, baseline, stages, copy_cpu,
                      (noop_cpu, noop_failed))
        if args.profile:
            summarize_profile(plan[-1][2])
    finally:
        if not args.keep:
            say("cleaning up: the run's rows, tenants and scratch tables ...")
            await delete_tenants(pools, tenants)
            for pool in pools.values():
                await pool.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
                await pool.execute("VACUUM ANALYZE records")
        await close_pools(pools)


async def _report(args: argparse.Namespace, settings: Settings, produced: Produced,
                  runs: list[DrainResult], baseline: dict[str, float],
                  stages: list[tuple[str, float, float]],
                  copy_cpu: tuple[float, float], noop: tuple[float, str | None]) -> None:
    ideal = serial = float("nan")
    raw = "consume-only (aiokafka getmany)" in baseline  # not with --no-baseline
    if raw:
        consume, copy = list(baseline.values())[:2]
        ideal = min(consume, copy)
        serial = 1 / (1 / consume + 1 / copy)
        table(["raw baseline (no decode/validate/route)", "records/s"],
              [(name, rate) for name, rate in baseline.items() if "reference" not in name] +
              [("= baseline: min(consume-only, COPY-only)", ideal),
               ("  (serial sum: 1/(1/consume + 1/COPY))", serial)],
              title=f"Baseline on the same {produced.count:,} messages "
                    f"({produced.bytes / produced.count:.0f} bytes each), "
                    f"batches of {settings.batch_size}")
        print(f"COPY-only CPU: {copy_cpu[0]:.1f} us/record in this process (asyncpg), "
              f"{copy_cpu[1]:.1f} us/record in PostgreSQL")
    loop = baseline.get("consume -> COPY loop (measured)", float("nan"))
    references = []
    reference = baseline.get(GETMANY)
    if reference:
        references.append(("mdmbus.streams.ingest.process_batch fed by aiokafka getmany (the "
                           "consume -> COPY loop, process_batch in place of COPY)",
                           reference, reference / ideal, float("nan")))
    if GETMANY_2 in baseline:
        references.append(("the same, 2 processes, each assigned half the partitions",
                           baseline[GETMANY_2], baseline[GETMANY_2] / ideal, float("nan")))
    if NOOP in baseline:
        references.append((f"faust agent doing no work (take_events, counts; the last "
                           f"{min(args.noop_records, produced.count):,} messages"
                           f"{'; faust default Monitor' if args.noop_faust_monitor else ''})",
                           baseline[NOOP], baseline[NOOP] / ideal, noop[0]))
    if references:
        table(["reference, on the same bytes", "records/s", "/ baseline", "CPU us/record"],
              references,
              title="Reference: mdmbus's processing without faust's stream machinery, and "
                    "faust's machinery without mdmbus's processing (CPU: the whole worker "
                    "process, as 'pipeline worker(s)' below)")
    if noop[1]:
        print(f"faust agent doing no work: NOT measured ({noop[1]})")
    table(["mdmbus pipeline", "stored", "first->last s", "records/s", "p10-p90 rec/s",
           "/ baseline", "/ serial", "/ loop"],
          [(r.label, r.stored, r.last - r.first, r.rate, r.steady_rate, r.rate / ideal,
            r.rate / serial, r.rate / loop) for r in runs],
          title="End to end: mdm.upload -> durable rows in the region stores")
    if raw:
        ok = runs[0].rate / ideal >= 0.5
        print(f"target mdmbus / baseline >= 0.5 (1 worker): "
              f"{runs[0].rate / ideal:.2f} -> {'met' if ok else 'NOT met'}")
    if len(runs) > 1 and runs[1].workers == 2:
        print(f"2 workers / 1 worker: {runs[1].rate / runs[0].rate:.2f}x")
    if stages:
        _report_stages(stages, runs, baseline, min(args.stages, produced.count))
    for r in runs:
        n = max(1, r.cpu_records)
        table(["process", "CPU s", "cores", "CPU us/record"],
              [(what, s, cores, 1e6 * s / n) for what, s, cores in r.cpu],
              title=f"Where the CPU went while {r.label} drained the topic (from its first "
                    f"commit to its last: {n:,} records; 'cores' = CPU s / wall s)")


def _report_stages(stages: list[tuple[str, float, float]], runs: list[DrainResult],
                   baseline: dict[str, float], sample: int) -> None:
    worker_stages = [s for s in stages if not s[0].startswith(("decode", "validate",
                                                                "idempotent write: Postgre"))]
    own = sum(cpu for _, cpu, _ in worker_stages)
    rows = [(name, cpu, wall, 1e6 / cpu if cpu else float("nan")) for name, cpu, wall in stages]
    rows.append(("= the worker's own steps (classify_events, route + rows, write client)", own,
                 float("nan"), 1e6 / own))
    one = next((r for r in runs if r.workers == 1 and "pyinstrument" not in r.label), None)
    if one and one.cpu:
        main_cpu = next((s for what, s, _ in one.cpu if "main thread" in what), float("nan"))
        per = 1e6 * main_cpu / max(1, one.cpu_records)
        rows.append(("worker main thread in the drain (measured above)", per, float("nan"),
                     1e6 / per))
        rows.append(("=> faust/mode/asyncio machinery and the rest (difference)", per - own,
                     float("nan"), float("nan")))
    copy = baseline.get("COPY-only (same rows, same dbs)")
    if copy:
        rows.append(("for comparison: COPY-only baseline, wall", float("nan"), 1e6 / copy,
                     float("nan")))
    table(["step (the pipeline's functions, in this process)", "CPU us/rec", "wall us/rec",
           "rec/s a core"], rows,
          title=f"The pipeline's own steps timed one by one on {sample:,} of the same messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--workers", type=int, choices=(1, 2), default=1,
                        help="2: run one worker, then two workers in the same group")
    parser.add_argument("--profile", action="store_true",
                        help="one more run, one worker under pyinstrument; print its profile")
    parser.add_argument("--profile-records", type=int, default=100_000, metavar="N",
                        help="the profiled run drains the last N of the records (the profile "
                             "grows with the run: ~3 KB a sample)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the reference run of process_batch without faust")
    parser.add_argument("--no-noop", dest="noop", action="store_false",
                        help="skip the reference run of a faust agent doing no work")
    parser.add_argument("--noop-faust-monitor", action="store_true",
                        help="run the no-op agent on faust's default Monitor instead of the "
                             "pipeline's QuietMonitor (compare with a run without it)")
    parser.add_argument("--noop-records", type=int, default=200_000, metavar="N",
                        help="the faust agent doing no work drains a copy of the last N of the "
                             "records")
    parser.add_argument("--stages", type=int, default=20_000, metavar="N",
                        help="time the pipeline's own steps one by one on N of the messages "
                             "(0: skip)")
    parser.add_argument("--seed", type=int, default=None,
                        help="of the tenants and records (default: a fresh one each run)")
    parser.add_argument("--stall", type=float, default=120.0,
                        help="give up after this many seconds without progress")
    parser.add_argument("--keep", action="store_true", help="leave rows and tenants in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
