"""`mdmbus demo` (what `./run demo` runs): the whole pipeline on the embedded stack with a
simulated world on an accelerated clock, and a live summary of what the rules did.

Starts the three processes (pipeline, cm-connector, sweeper) with one shared clock and a
/metrics port each, drives the simulators, and prints every few seconds: records per region,
tenants by state, deletions per rule, dead letters by reason, and the rows past their
deadline, which must stay 0. Ctrl-C (or --duration) stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.regions import REGIONS, region_database
from mdmbus.settings import Settings
from mdmbus.services.rules.audit import RULES
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.simulators.workload import SimulatedWorld
from mdmbus.services.stores.schema import ensure_region_schema
from mdmbus.services.sweeper import PAST_DEADLINE_TOLERANCE_S

__all__ = ["run_demo", "metrics_ports"]

#: Where each process serves /metrics during the demo, from the base port (9101 by default:
#: ops/prometheus/prometheus.yml scrapes 9101-9103).
PROCESS_ORDER = ("pipeline", "cm-connector", "sweeper")


def metrics_ports(base: int) -> dict[str, int]:
    return {name: base + i for i, name in enumerate(PROCESS_ORDER)}


@dataclasses.dataclass
class _Demo:
    settings: Settings
    clock: Clock
    started_real: dt.datetime
    dead_letters: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def _start_processes(settings: Settings, clock: Clock, log_dir: Path,
                     ports: dict[str, int]) -> dict[str, subprocess.Popen]:
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, port in ports.items():
        env = dict(os.environ, MDMBUS_CLOCK_SPEED=repr(clock.speed),
                   MDMBUS_CLOCK_ORIGIN=repr(clock.origin), MDMBUS_METRICS_PORT=str(port))
        log = open(log_dir / f"{name}.log", "ab")
        procs[name] = subprocess.Popen([sys.executable, "-m", "mdmbus", "process", name],
                                       env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    return procs


def _stop_processes(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for name, proc in procs.items():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _count_dead_letters(demo: _Demo, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=demo.settings.kafka_bootstrap,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    demo.dead_letters[dict(m.headers).get("mdmbus.reason", b"?").decode()] += 1
    finally:
        await consumer.stop()


async def _summary(demo: _Demo, pools: dict[str, asyncpg.Pool], world: SimulatedWorld) -> str:
    stored, states, deleted, past = {}, collections.Counter(), collections.Counter(), 0
    late = demo.clock.now_dt() - dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * demo.clock.speed)
    for region, pool in pools.items():
        stored[region] = await pool.fetchval("SELECT count(*) FROM records WHERE body IS NOT NULL")
        for row in await pool.fetch("SELECT state, count(*) AS n FROM tenants GROUP BY state"):
            states[row["state"]] += row["n"]
        for row in await pool.fetch(
                "SELECT rule, sum(row_count) AS n FROM deletion_audit WHERE deleted_at_real >= $1"
                " AND category <> 'tenant' GROUP BY rule", demo.started_real):
            deleted[row["rule"]] += row["n"]
        past += sum((await rows_past_deadline(pool, late)).values())
    elapsed = (dt.datetime.now(dt.timezone.utc) - demo.started_real).total_seconds()
    lines = [
        f"--- {elapsed:6.0f} s real | simulated {demo.clock.now_dt():%Y-%m-%d %H:%M} "
        f"(x{demo.clock.speed:g}) | {world.sent} records sent",
        "  stored rows by region : " + "  ".join(f"{r} {stored[r]}" for r in REGIONS),
        "  tenants               : " + "  ".join(f"{s} {states[s]}" for s in ("active", "retention")),
        "  deletions by rule     : " + "  ".join(f"{r} {deleted[r]}" for r in RULES),
        "  dead letters by reason: " + ("  ".join(f"{r} {n}" for r, n in
                                                 sorted(demo.dead_letters.items())) or "none"),
        f"  rows past deadline    : {past}" + ("  (must be 0)" if past else ""),
    ]
    return "\n".join(lines)


async def _demo(settings: Settings, speed: float, duration: float | None, rate: float,
                tenants: int, start_processes: bool, metrics_base_port: int) -> int:
    if start_processes or not settings.clock_origin:
        clock = Clock(speed=speed, origin=time.time())
    else:
        # The processes run elsewhere (compose) on MDMBUS_CLOCK_SPEED/ORIGIN: share their clock.
        clock = Clock.from_settings(settings)
    demo = _Demo(settings, clock, dt.datetime.now(dt.timezone.utc))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_dir = settings.state_dir / "logs"
    ports = metrics_ports(metrics_base_port)
    procs = _start_processes(settings, clock, log_dir, ports) if start_processes else {}
    print(f"demo: clock x{speed:g} (90 days of retention = {90 * 86400 / speed:.0f} s real); "
          f"{rate:g} records/s for {tenants} tenants in {', '.join(REGIONS)}")
    if procs:
        print("demo: processes " + ", ".join(f"{n} (pid {p.pid}, /metrics on "
                                             f"http://127.0.0.1:{ports[n]}/metrics)"
                                             for n, p in procs.items()))
        print(f"demo: logs in {log_dir}; Ctrl-C stops")
    pools = {r: await asyncpg.create_pool(settings.pg_dsn(region_database(r)), min_size=1, max_size=2)
             for r in REGIONS}
    for pool in pools.values():
        async with pool.acquire() as conn:
            await ensure_region_schema(conn)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5)
    await producer.start()
    world = SimulatedWorld(producer, clock, rate=rate, tenants=tenants)
    tasks = [asyncio.create_task(world.run(stop)), asyncio.create_task(_count_dead_letters(demo, stop))]
    status = 0
    try:
        end = None if duration is None else loop.time() + duration
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 3.0)
            except asyncio.TimeoutError:
                pass
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"demo: {name} exited with {proc.returncode}; see {log_dir / (name + '.log')}")
                    status = 1
                    stop.set()
            for task in tasks:
                if task.done() and task.exception():
                    print(f"demo: simulator failed: {task.exception()!r}")
                    status = 1
                    stop.set()
            print(await _summary(demo, pools, world), flush=True)
            if end is not None and loop.time() >= end:
                stop.set()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        _stop_processes(procs)
        print(await _summary(demo, pools, world))
        for pool in pools.values():
            await pool.close()
        print("demo: stopped; the stack keeps running (`.venv/bin/mdmbus stack down` stops it)")
    return status


def run_demo(settings: Settings, speed: float = 400_000.0, duration: float | None = None,
             rate: float = 200.0, tenants: int = 24, start_processes: bool = True,
             metrics_base_port: int = 9101) -> int:
    return asyncio.run(_demo(settings, speed, duration, rate, tenants, start_processes,
                             metrics_base_port))
