"""End-to-end latency: a record's event time to its durable row, at about half of the maximum
throughput, on the real clock (speed 1).

    python -m bench.latency [--rate R] [--seconds 60] [--warmup 5] [--calibrate N]

Without --rate, the maximum is measured first, as bench.throughput does (N records
pre-produced and drained by one worker; the rate between the 10th and 90th percentile of the
stored rows), and the paced run goes at half of it. Then one pipeline worker is started, a
probe record is waited for, and a paced producer sends upload records (the bench.throughput
mix, acks=all, linger 5 ms like the CM side) for --seconds, each stamped with its event time
just before it is sent. The latency of a record is its row's stored_at_real minus its
envelope.event_time (services/stores/region_schema.sql); records of the first --warmup seconds
are left out. Target: p99 < 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.settings import Settings
from bench.support import (PIPELINE_GROUP, PIPELINE_TOPICS, CpuMeter, Processes, Progress,
                           RecordMix, Tenants, check_stack, close_pools, committed, delete_tenants,
                           end_offsets, fast_forward, forget_rows, kafka_pid, machine,
                           onboard_tenants, percentile, postgres_pid, producer, region_pools,
                           say, table, run_cli)
from bench.throughput import drain, produce

__all__ = ["main"]


async def _calibrate(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: Tenants,
                     mix: RecordMix, n: int) -> float:
    say(f"calibrating: the maximum throughput of one worker on {n:,} pre-produced records ...")
    produced = await produce(settings, mix, tenants, n, Clock(1.0, time.time()), keep_rows=False)
    result = await drain(settings, pools, tenants, produced, 1, "calibration")
    await forget_rows(pools, tenants)
    return result.steady_rate


async def _latencies(pools: dict[str, asyncpg.Pool], tenants: Tenants,
                     since_ms: int) -> list[tuple[float, float]]:
    """(event time, seconds from event time to durable row) of every row of the run stamped
    after since_ms."""
    out: list[tuple[float, float]] = []
    for region, pool in pools.items():
        ids = tenants.in_region(region)
        if ids:
            rows = await pool.fetch(
                "SELECT extract(epoch FROM event_time)::float8 AS t,"
                " extract(epoch FROM stored_at_real - event_time)::float8 AS lag"
                " FROM records WHERE tenant_id = ANY($1::uuid[]) AND event_time >= $2",
                ids, _dt(since_ms))
            out += [(r["t"], r["lag"]) for r in rows]
    return out


def _dt(ms: int):
    import datetime as dt
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


async def _wait_stored(pools: dict[str, asyncpg.Pool], region: str, record_id: str,
                       timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        if await pools[region].fetchval("SELECT 1 FROM records WHERE record_id = $1",
                                        uuid.UUID(record_id)):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the probe record was not stored within {timeout:.0f} s; "
                       f"see {procs.log_dir}")


async def paced_run(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: Tenants,
                    mix: RecordMix, rate: float, seconds: float,
                    warmup: float) -> tuple[list[tuple[float, float]], int, float, list]:
    """(latencies after the warm-up, records sent, the rate actually sent)."""
    clock = Clock(1.0, time.time())
    kafka = [p for p in [kafka_pid(settings)] if p]
    await fast_forward(settings, PIPELINE_GROUP, PIPELINE_TOPICS)
    start = await end_offsets(settings, topics.UPLOAD)
    procs = Processes(settings, speed=1.0)
    prod = producer(settings, linger_ms=5)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await prod.start()
    await admin.start()
    try:
        worker = procs.start("pipeline")
        say(f"worker started (logs in {procs.log_dir}); waiting for a probe record ...")
        kind, probe = mix.make(clock.now_ms())
        topic, key, value = mix.encode(kind, probe)
        await prod.send_and_wait(topic, value=value, key=key)
        await _wait_stored(pools, tenants.region_of[probe["envelope"]["tenant_id"]],
                           probe["envelope"]["record_id"], 120, procs)

        say(f"paced producer: {rate:,.0f} records/s for {warmup + seconds:.0f} s "
            f"(the first {warmup:.0f} s are warm-up)")
        began = time.monotonic()
        measured_from_ms = clock.now_ms() + int(warmup * 1000)
        meter = CpuMeter({"pipeline worker": [worker.pid], "kafka broker": kafka,
                          "this benchmark (the paced producer)": [os.getpid()]},
                         postmaster=await postgres_pid(pools))
        sent = 0
        progress = Progress("sent", int(rate * (warmup + seconds)))
        tick = 0.01
        while True:
            elapsed = time.monotonic() - began
            if elapsed >= warmup + seconds:
                break
            due = int(rate * elapsed)
            while sent < due:
                kind, record = mix.make(clock.now_ms())
                topic, key, value = mix.encode(kind, record)
                await prod.send(topic, value=value, key=key)
                sent += 1
            progress.update(sent)
            procs.check_alive()
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - began - elapsed)))
        await prod.flush()
        actual = sent / (time.monotonic() - began)
        cpu = meter.stop()
        end = await end_offsets(settings, topics.UPLOAD)
        total = sum(end[tp] - start[tp] for tp in end)
        say(f"  sent {sent:,} ({actual:,.0f}/s); waiting until the worker has committed them")
        tps = list(end)
        last, last_change = -1, time.monotonic()
        while True:
            offsets = await committed(admin, PIPELINE_GROUP, tps)
            done = sum(max(0, offsets[tp] - start[tp]) for tp in tps)
            if done >= total:
                break
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > 120:
                raise RuntimeError(f"no progress for 120 s at {done:,}/{total:,}")
            procs.check_alive()
            await asyncio.sleep(0.5)
    finally:
        procs.stop()
        await prod.stop()
        await admin.close()
    return await _latencies(pools, tenants, measured_from_ms), sent, actual, cpu


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"machine: {machine()}")
    print(f"settings: MDMBUS_BATCH_SIZE={settings.batch_size} MDMBUS_BATCH_WAIT="
          f"{settings.batch_wait_s} s, clock speed 1, {args.tenants} tenants (seed {seed})")
    pools = await region_pools(settings)
    rng = random.Random(seed)
    tenants = await onboard_tenants(pools, args.tenants, Clock(1.0, time.time()).now_dt(), rng)
    try:
        mix = RecordMix(tenants, seed=seed)
        maximum = None
        rates = [float(r) for r in args.rate.split(",")] if args.rate else []
        if not rates:
            maximum = await _calibrate(settings, pools, tenants, mix, args.calibrate)
            rates = [maximum / 2]
            say(f"  maximum {maximum:,.0f} records/s -> paced at {rates[0]:,.0f} records/s")
        summary = []
        for i, rate in enumerate(rates):
            if i:
                await forget_rows(pools, tenants)
            summary.append(await _one_rate(settings, pools, tenants, mix, rate, maximum, args))
        if len(summary) > 1:
            table(["rate asked (records/s)", "sent/s", "p50 ms", "p99 ms", "max ms",
                   "p99 < 500 ms"], summary, title="Latency by rate, one worker")
    finally:
        if not args.keep:
            say("cleaning up: the run's rows and tenants ...")
            await delete_tenants(pools, tenants)
        await close_pools(pools)


async def _one_rate(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: Tenants,
                    mix: RecordMix, rate: float, maximum: float | None,
                    args: argparse.Namespace) -> tuple:
    lat, sent, actual, cpu = await paced_run(settings, pools, tenants, mix, rate,
                                             args.seconds, args.warmup)
    ms = [1000 * x for _, x in lat]
    rows = [("records measured (after warm-up)", len(ms))]
    if maximum:
        rows.append(("maximum throughput, 1 worker (records/s)", maximum))
    rows += [("paced rate asked / sent (records/s)", f"{rate:,.0f} / {actual:,.0f}"),
             ("p50 (ms)", percentile(ms, 50)), ("p90 (ms)", percentile(ms, 90)),
             ("p99 (ms)", percentile(ms, 99)), ("p99.9 (ms)", percentile(ms, 99.9)),
             ("max (ms)", max(ms) if ms else float("nan"))]
    table(["event time -> durable row (real clock)", "value"], rows,
          title=f"Latency over {args.seconds:.0f} s at {actual:,.0f} records/s, one worker")
    if lat:
        t0 = min(t for t, _ in lat)
        width = max(5.0, args.seconds / 12)
        windows: dict[int, list[float]] = {}
        for t, x in lat:
            windows.setdefault(int((t - t0) // width), []).append(1000 * x)
        table(["seconds after the warm-up", "records", "p50 ms", "p99 ms", "max ms"],
              [(f"{i * width:.0f}-{(i + 1) * width:.0f}", len(v), percentile(v, 50),
                percentile(v, 99), max(v)) for i, v in sorted(windows.items())],
              title="Over time (a latency that grows window after window means the worker "
                    "cannot keep up with the rate)")
    table(["process", "CPU s", "cores"], cpu,
          title="Where the CPU went during the paced run ('cores' = CPU s / wall s)")
    p99 = percentile(ms, 99)
    print(f"target p99 < 500 ms at {actual:,.0f} records/s: {p99:.0f} ms -> "
          f"{'met' if p99 < 500 else 'NOT met'}")
    return (rate, actual, percentile(ms, 50), p99, max(ms) if ms else float("nan"),
            "yes" if p99 < 500 else "no")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default=None,
                        help="records/s to send, or several comma-separated for a sweep "
                             "(default: half of the measured maximum)")
    parser.add_argument("--calibrate", type=int, default=50_000, metavar="N",
                        help="records drained to measure the maximum (without --rate)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="leave rows and tenants in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
