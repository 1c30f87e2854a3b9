"""End-to-end latency: a record's event time to its durable row, at about half of the maximum
throughput of one pipeline worker, on the real clock (speed 1).

    python -m bench.latency [--rate R] [--seconds 60] [--warmup 5] [--calibrate N] [--region eu]

Every tenant is in one region (--region), and one pipeline worker of that region
(`mdmbus process pipeline --region R`, through the one launcher) stores its records. Without
--rate, the maximum is measured first, as bench.throughput does (N records pre-produced to
mdm.<region>.upload and drained by one worker; the rate between the 10th and the 90th
percentile of the stored rows), and the paced run goes at half of it. Then the worker is
started again, a probe record is waited for, and a paced producer sends upload records (the
bench.throughput mix, acks=all, linger 5 ms like the gateway) for --seconds, each stamped with
its event time just before it is sent. The latency of a record is its row's stored_at_real
minus its envelope.event_time (services/stores/region_schema.sql); records of the first
--warmup seconds are left out. Target: p99 < 250 ms (TARGET_P99_MS).

With --sealing on,off (the default), each rate is paced twice, the same way: through a worker
that seals every body (as mdmbus runs) and through one that stores bodies in clear
(bench.unsealed, benchmarks only); each prints p50/p99 and the worker's CPU a record (its CPU
while the producer paced / records sent), and a last table their differences: what sealing
costs in latency and in the worker's CPU, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import time
import uuid

from mdmbus.clock import Clock
from mdmbus.cli.launcher import Launcher
from mdmbus.regions import REGIONS
from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name
from bench.support import (CpuMeter, Progress, RecordMix, Tenants, check_stack, delete_tenants,
                           end_offsets, forget_rows, kafka_pid, launcher, onboard_tenants,
                           open_stores, parser as make_parser, percentile, pipeline_group,
                           point_pipeline_at, postgres_pid, producer, run_cli, say, table,
                           wait_committed)
from bench.throughput.drain import drain
from bench.throughput.produce import build_load, produce
from bench.unsealed import prefix as unsealed_prefix

__all__ = ["main"]

#: p99 under 250 ms at half the maximum throughput of one worker.
TARGET_P99_MS = 250.0
#: --sealing's words: a worker that seals every body (mdmbus as it runs) or one that stores
#: them in clear (bench.unsealed, benchmarks only).
SEALING = {"on": True, "off": False}
#: The CPU meter's name for the worker.
WORKER = "pipeline worker"


async def _calibrate(settings: Settings, stores: Stores, tenants: Tenants, region: str,
                     mix: RecordMix, n: int) -> float:
    say(f"calibrating: the maximum throughput of one worker of {region} on {n:,} pre-produced "
        "records ...")
    load = build_load(mix, n, Clock(1.0, time.time()), region, rows=False)
    produced = await produce(settings, load)
    result = await drain(settings, stores, tenants, region, produced, 1, "calibration")
    await forget_rows(stores, tenants)
    return result.steady_rate


async def _latencies(stores: Stores, tenants: Tenants,
                     since_ms: int) -> list[tuple[float, float]]:
    """(event time, seconds from event time to durable row) of every row of the run stamped
    after since_ms."""
    out: list[tuple[float, float]] = []
    for region in tenants.regions:
        rows = await stores.region(region).fetch(
            "SELECT extract(epoch FROM event_time)::float8 AS t,"
            " extract(epoch FROM stored_at_real - event_time)::float8 AS lag"
            " FROM records WHERE tenant_id = ANY($1::uuid[]) AND event_time >= $2",
            tenants.in_region(region), dt.datetime.fromtimestamp(since_ms / 1000, dt.timezone.utc))
        out += [(r["t"], r["lag"]) for r in rows]
    return out


async def _wait_stored(stores: Stores, region: str, record_id: str, timeout: float,
                       procs: Launcher) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.assert_alive()
        if await stores.region(region).fetchval("SELECT 1 FROM records WHERE record_id = $1",
                                                uuid.UUID(record_id)):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the probe record was not stored within {timeout:.0f} s; "
                       f"see {procs.log_dir}")


async def paced_run(settings: Settings, stores: Stores, tenants: Tenants, region: str,
                    mix: RecordMix, rate: float, seconds: float, warmup: float,
                    sealed: bool = True) -> tuple[list[tuple[float, float]], int, float, list]:
    """(latencies after the warm-up, records sent, the rate actually sent, CPU rows); the
    worker stores bodies in clear (bench.unsealed) unless ``sealed``."""
    clock = Clock(1.0, time.time())
    topic = topic_name(TopicKind.UPLOAD, region)
    await point_pipeline_at(settings, region)
    start = await end_offsets(settings, topic)
    procs = launcher(settings, "latency")
    prod = producer(settings, linger_ms=5)
    await prod.start()
    try:
        worker = procs.start("pipeline", region, prefix=() if sealed else unsealed_prefix())
        say(f"worker started (logs in {procs.log_dir}); waiting for a probe record ...")
        kind, probe = mix.make(clock.now_ms())
        to, key, value = mix.encode(kind, probe)
        await prod.send_and_wait(to, value=value, key=key)
        await _wait_stored(stores, region, probe["envelope"]["record_id"], 120, procs)

        say(f"paced producer: {rate:,.0f} records/s for {warmup + seconds:.0f} s "
            f"(the first {warmup:.0f} s are warm-up)")
        began = time.monotonic()
        measured_from_ms = clock.now_ms() + int(warmup * 1000)
        groups = {WORKER: [procs.procs[worker].pid],
                  "this benchmark (the paced producer)": [os.getpid()]}
        broker = kafka_pid(settings)
        if broker:
            groups["kafka broker"] = [broker]
        meter = CpuMeter(groups, postmaster=await postgres_pid(stores.directory_pool))
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
                to, key, value = mix.encode(kind, record)
                await prod.send(to, value=value, key=key)
                sent += 1
            progress.update(sent)
            procs.assert_alive()
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - began - elapsed)))
        await prod.flush()
        actual = sent / (time.monotonic() - began)
        cpu = meter.stop()
        end = await end_offsets(settings, topic)
        say(f"  sent {sent:,} ({actual:,.0f}/s); waiting until the worker has committed them")
        await wait_committed(settings, pipeline_group(region), end, start, procs)
    finally:
        procs.stop()
        await prod.stop()
    return await _latencies(stores, tenants, measured_from_ms), sent, actual, cpu


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    region = args.region
    words = [m.strip() for m in args.sealing.split(",") if m.strip()]
    if not words or any(m not in SEALING for m in words):
        raise SystemExit(f"--sealing {args.sealing!r}: each mode is 'on' or 'off'")
    modes = list(dict.fromkeys(SEALING[m] for m in words))
    await check_stack(settings, [region])
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"settings: MDMBUS_BATCH_SIZE={settings.batch_size} MDMBUS_BATCH_WAIT="
          f"{settings.batch_wait_s} s, clock speed 1, {args.tenants} tenants of {region}, one "
          f"worker of {region} (seed {seed})")
    stores = await open_stores(settings, [region])
    rng = random.Random(seed)
    tenants = await onboard_tenants(stores, args.tenants, Clock(1.0, time.time()).now_dt(), rng,
                                    [region])
    try:
        mix = RecordMix(tenants, seed=seed)
        maximum = None
        rates = [float(r) for r in args.rate.split(",")] if args.rate else []
        if not rates:
            maximum = await _calibrate(settings, stores, tenants, region, mix, args.calibrate)
            rates = [maximum / 2]
            say(f"  maximum {maximum:,.0f} records/s -> paced at {rates[0]:,.0f} records/s")
        summary = []
        runs = [(rate, sealed) for rate in rates for sealed in modes]
        for i, (rate, sealed) in enumerate(runs):
            if i:
                await forget_rows(stores, tenants)
            summary.append(await _one_rate(settings, stores, tenants, region, mix, rate,
                                           maximum, args, sealed))
        if len(summary) > 1:
            table(["rate asked (records/s)", "bodies", "sent/s", "p50 ms", "p99 ms", "max ms",
                   f"p99 < {TARGET_P99_MS:g} ms", "worker us/rec"], summary,
                  title="Latency by rate, one worker")
        _sealing_cost(summary)
    finally:
        if not args.keep:
            say("cleaning up: the run's rows and tenants ...")
            await delete_tenants(stores, tenants)
        await stores.close()


async def _one_rate(settings: Settings, stores: Stores, tenants: Tenants, region: str,
                    mix: RecordMix, rate: float, maximum: float | None,
                    args: argparse.Namespace, sealed: bool = True) -> tuple:
    bodies = "sealed" if sealed else "in clear (bench only)"
    say(f"paced run at {rate:,.0f} records/s, bodies {bodies}")
    lat, sent, actual, cpu = await paced_run(settings, stores, tenants, region, mix, rate,
                                             args.seconds, args.warmup, sealed)
    ms = [1000 * x for _, x in lat]
    rows = [("records measured (after warm-up)", len(ms))]
    if maximum:
        rows.append(("maximum throughput, 1 worker (records/s)", maximum))
    rows += [("paced rate asked / sent (records/s)", f"{rate:,.0f} / {actual:,.0f}"),
             ("p50 (ms)", percentile(ms, 50)), ("p90 (ms)", percentile(ms, 90)),
             ("p99 (ms)", percentile(ms, 99)), ("p99.9 (ms)", percentile(ms, 99.9)),
             ("max (ms)", max(ms) if ms else float("nan"))]
    worker_us = next((1e6 * s / sent for what, s, _ in cpu if what == WORKER and sent),
                     float("nan"))
    rows.append(("worker CPU a record (us; its CPU while paced / records sent)", worker_us))
    table(["event time -> durable row (real clock)", "value"], rows,
          title=f"Latency over {args.seconds:.0f} s at {actual:,.0f} records/s, one worker, "
                f"bodies {bodies}")
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
    print(f"target p99 < {TARGET_P99_MS:g} ms at {actual:,.0f} records/s: {p99:.0f} ms -> "
          f"{'met' if p99 < TARGET_P99_MS else 'NOT met'}")
    return (rate, "sealed" if sealed else "in clear", actual, percentile(ms, 50), p99,
            max(ms) if ms else float("nan"), "yes" if p99 < TARGET_P99_MS else "no", worker_us)


def _sealing_cost(summary: list[tuple]) -> None:
    """For each rate paced both ways: p50, p99 and the worker's CPU a record sealed, in
    clear, and the difference (what sealing costs)."""
    rows = []
    for rate in dict.fromkeys(r[0] for r in summary):
        on = next((r for r in summary if r[0] == rate and r[1] == "sealed"), None)
        off = next((r for r in summary if r[0] == rate and r[1] == "in clear"), None)
        if on is None or off is None:
            continue
        for what, i in (("p50 ms", 3), ("p99 ms", 4), ("worker CPU us/record", 7)):
            rows.append((f"{rate:,.0f} records/s: {what}", on[i], off[i], on[i] - off[i]))
        share = (on[7] - off[7]) / on[7]
        rows.append((f"{rate:,.0f} records/s: sealing / worker CPU a record",
                     float("nan"), float("nan"), f"{100 * share:.1f}%"))
    if rows:
        table(["paced run, one worker", "sealed", "in clear", "sealed - in clear"], rows,
              title="What sealing costs at a paced rate, same run (in clear: bench.unsealed, "
                    "benchmarks only). The two paced runs' CPU a record differ by the seal and "
                    "by their noise on a shared machine, which is of the seal's size: "
                    "bench.throughput times the seal itself against the worker's CPU")


def main() -> None:
    parser = make_parser("bench.latency", __doc__)
    parser.add_argument("--rate", default=None,
                        help="records/s to send, or several comma-separated for a sweep "
                             "(default: half of the measured maximum)")
    parser.add_argument("--calibrate", type=int, default=50_000, metavar="N",
                        help="records drained to measure the maximum (without --rate)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--region", choices=REGIONS, default="eu",
                        help="the region of every tenant, and of the worker")
    parser.add_argument("--sealing", default="on,off",
                        help="pace each rate through a worker that seals every body (on, as "
                             "mdmbus runs) and/or one that stores them in clear (off: "
                             "bench.unsealed, benchmarks only), in this order (default on,off)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="leave rows and tenants in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
