"""`mdmbus demo` (what `./run demo` runs): the whole pipeline on the embedded stack with a
simulated world on an accelerated clock, and a live summary of what the rules did.

Starts the processes (pipeline, sweeper and gateway for every region, the CM connector) with
one shared clock and a /metrics port each, drives the simulators, and prints every few
seconds: records per region, tenants by state, deletions per rule, dead letters by reason, the
rows past their deadline and the processed copies still readable in Kafka past their bound,
both of which must stay 0. Ctrl-C (or --duration) stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import signal
import time

import asyncpg
from prometheus_client import CollectorRegistry

from mdmbus.cli.demo_privacy import print_privacy_center
from mdmbus.cli.launcher import Launcher
from mdmbus.clock import Clock
from mdmbus.connections import pg_pool
from mdmbus.crypto.keyring import read_status
from mdmbus.identities import role_of
from mdmbus.metrics import Metrics
from mdmbus.regions import DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.services.rules.audit import RULES
from mdmbus.services.rotation import rows_past_retirement
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.simulators.workload import SimulatedWorld
from mdmbus.services.sweeper import PAST_DEADLINE_TOLERANCE_S
from mdmbus.services.transit_watch import TransitWatch
from mdmbus.settings import Settings

__all__ = ["run_demo", "metrics_ports", "DEMO_PROCESSES"]

#: What the demo starts: (process, region) in start order; /metrics on consecutive ports
#: from the base port (9101 by default: ops/prometheus/prometheus.yml scrapes 9101-9104).
DEMO_PROCESSES = (("pipeline", "all"), ("sweeper", "all"), ("gateway", "all"),
                  ("cm-connector", None))


def metrics_ports(base: int) -> dict[str, int]:
    return {name: base + i for i, (name, _) in enumerate(DEMO_PROCESSES)}


@dataclasses.dataclass
class _Demo:
    settings: Settings
    clock: Clock
    started_real: dt.datetime
    dead_letters: collections.Counter = dataclasses.field(default_factory=collections.Counter)


async def _count_dead_letters(demo: _Demo, stop: asyncio.Event) -> None:
    """Counts the notices on every region's dead-letter topic (their bodies, in the stores,
    expire within days of simulated time, a second or two of the demo's)."""
    from aiokafka import AIOKafkaConsumer

    from mdmbus.connections import kafka_options
    from mdmbus.topics import TopicKind, topic_name
    consumer = AIOKafkaConsumer(*(topic_name(TopicKind.DEAD_LETTER, r) for r in REGIONS),
                                **kafka_options(demo.settings, demo.settings.kafka_principal,
                                                auto_offset_reset="latest",
                                                enable_auto_commit=False))
    await consumer.start()
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    demo.dead_letters[dict(m.headers).get("mdmbus.reason", b"?").decode()] += 1
    finally:
        await consumer.stop()


async def _summary(demo: _Demo, pools: dict[str, asyncpg.Pool], directory: asyncpg.Pool,
                   world: SimulatedWorld, watches: list[TransitWatch]) -> str:
    stored: dict[str, int] = {}
    states: collections.Counter[str] = collections.Counter()
    deleted: collections.Counter[str] = collections.Counter()
    past = 0
    letters = collections.Counter(demo.dead_letters)
    late = demo.clock.now_dt() - dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * demo.clock.speed)
    for region, pool in pools.items():
        stored[region] = await pool.fetchval("SELECT count(*) FROM records WHERE has_body")
        for row in await pool.fetch("SELECT state, count(*) AS n FROM tenants GROUP BY state"):
            states[row["state"]] += row["n"]
        for row in await pool.fetch(
                "SELECT rule, sum(row_count) AS n FROM deletion_audit WHERE deleted_at_real >= $1"
                " AND category <> 'tenant' GROUP BY rule", demo.started_real):
            deleted[row["rule"]] += row["n"]
        past += sum((await rows_past_deadline(pool, late)).values())
    for row in await directory.fetch(
            "SELECT reason, count(*) AS n FROM lifecycle_refusals WHERE refused_at >= $1"
            " GROUP BY reason", demo.started_real):
        letters[row["reason"]] += row["n"]
    rotations, past_kek = [], 0
    for region, pool in pools.items():
        ring = read_status(demo.settings.keyring_path, region)
        if ring is None:
            rotations.append(f"{region} -")
            continue
        age = time.time() - ring.current_since
        rotations.append(f"{region} {ring.rotations} (KEK {age:.0f} s old)")
        past_kek += await rows_past_retirement(pool, ring, demo.settings.kek_rewrap_allowance_s)
    readable = 0
    for watch in watches:
        readable += sum((await watch.measure()).past_bound.values())
    elapsed = (dt.datetime.now(dt.timezone.utc) - demo.started_real).total_seconds()
    return "\n".join([
        f"--- {elapsed:6.0f} s real | simulated {demo.clock.now_dt():%Y-%m-%d %H:%M} "
        f"(x{demo.clock.speed:g}) | {world.sent} records to Kafka, {world.uploaded} uploaded "
        f"through the gateways",
        "  stored rows by region : " + "  ".join(f"{r} {stored[r]}" for r in REGIONS),
        "  tenants               : " + "  ".join(f"{s} {states[s]}" for s in ("active", "retention")),
        "  deletions by rule     : " + "  ".join(f"{r} {deleted[r]}" for r in RULES),
        "  dead letters by reason: " + ("  ".join(f"{r} {n}" for r, n in sorted(letters.items()))
                                        or "none"),
        f"  rows past deadline    : {past}" + ("  (must be 0)" if past else ""),
        f"  readable copies past their bound: {readable}" + ("  (must be 0)" if readable else ""),
        "  KEK rotations         : " + "  ".join(rotations),
        f"  rows under a retired KEK past its bound: {past_kek}"
        + ("  (must be 0)" if past_kek else ""),
    ])


async def _demo(settings: Settings, speed: float, duration: float | None, rate: float,
                tenants: int, start_processes: bool, metrics_base_port: int) -> int:
    from mdmbus.stack import issuer
    if start_processes or not settings.clock_origin:
        clock = Clock(speed=speed, origin=time.time())
    else:
        # The processes run elsewhere (compose) on MDMBUS_CLOCK_SPEED/ORIGIN: share their clock.
        clock = Clock.from_settings(settings)
    demo = _Demo(settings, clock, dt.datetime.now(dt.timezone.utc))
    world_since = clock.now_dt()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_dir = settings.state_dir / "logs"
    tokens_dir = settings.cm_tokens_path
    for old in tokens_dir.glob("*.json"):  # an earlier run's tenants are not this world's
        old.unlink()
    launcher = Launcher(log_dir, clock)
    ports = metrics_ports(metrics_base_port)
    if start_processes:
        for name, region in DEMO_PROCESSES:
            launcher.start(name, region, metrics_port=ports[name])
    print(f"demo: clock x{speed:g} (90 days of retention = {90 * 86400 / speed:.0f} s real); "
          f"{rate:g} records/s for {tenants} tenants in {', '.join(REGIONS)}")
    if launcher.procs:
        print("demo: processes " + ", ".join(
            f"{name} (pid {launcher.procs[key].pid}, /metrics on http://127.0.0.1:{ports[name]}/metrics)"
            for (name, region), key in zip(DEMO_PROCESSES, launcher.procs)))
        print("demo: gateways " + ", ".join(f"{r} {settings.gateway_url(r)}" for r in REGIONS))
        print(f"demo: logs in {log_dir}; Ctrl-C stops")
    token_issuer = issuer(settings)
    # The summary reads as the operators' read-only roles (mdmbus/identities.py).
    pools = {r: await pg_pool(settings, region_database(r), role_of("reader", r), max_size=2)
             for r in REGIONS}
    directory = await pg_pool(settings, DIRECTORY_DATABASE, role_of("directory-reader"),
                              max_size=1)
    metrics = Metrics(CollectorRegistry())
    watches = [await TransitWatch(settings, r, metrics).start() for r in REGIONS]
    world = await SimulatedWorld(settings, clock,
                                 lambda tenant, role: token_issuer.issue(tenant, role, 24 * 3600),
                                 rate=rate, tenants=tenants, connector_tokens=tokens_dir).start()
    await _wait_for_gateways(settings, stop, launcher)
    tasks = [asyncio.create_task(world.run(stop)),
             asyncio.create_task(_count_dead_letters(demo, stop))]
    if launcher.procs:
        tasks.append(asyncio.create_task(
            print_privacy_center(settings, directory, world_since, stop)))
    status = 0
    try:
        end = None if duration is None else loop.time() + duration
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 3.0)
            except asyncio.TimeoutError:
                pass
            for key, code in launcher.exited().items():
                print(f"demo: {key} exited with {code}; see {log_dir / (key + '.log')}")
                status = 1
                stop.set()
            for task in tasks:
                if task.done() and task.exception():
                    print(f"demo: simulator failed: {task.exception()!r}")
                    status = 1
                    stop.set()
            print(await _summary(demo, pools, directory, world, watches), flush=True)
            if end is not None and loop.time() >= end:
                stop.set()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await world.close()
        if not status:  # the last word, while the processes still run
            print(await _summary(demo, pools, directory, world, watches))
        launcher.stop()
        for watch in watches:
            await watch.close()
        for pool in [*pools.values(), directory]:
            await pool.close()
        print("demo: stopped; the stack keeps running (`.venv/bin/mdmbus stack down` stops it)")
    return status


async def _wait_for_gateways(settings: Settings, stop: asyncio.Event, launcher: Launcher,
                             timeout_s: float = 120) -> None:
    """Until every region's gateway accepts connections (the world uploads through them); a
    process of the demo that ends meanwhile (a gateway that cannot listen says why in its log)
    ends the wait at once, with its log's last lines."""
    deadline = time.monotonic() + timeout_s
    for region in REGIONS:
        port = settings.gateway_ports[region]
        while not stop.is_set():
            for key, code in launcher.exited().items():
                raise RuntimeError(f"{key} exited with {code} before the gateways listened:\n"
                                   f"{launcher.tail(key, 10)}")
            try:
                _, writer = await asyncio.open_connection(settings.gateway_addr, port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {region} gateway did not listen on port {port} "
                                       f"within {timeout_s:.0f} s (its log: "
                                       f"{launcher.log_dir}/gateway-all.log)") from None
                await asyncio.sleep(0.2)


def run_demo(settings: Settings, speed: float = 400_000.0, duration: float | None = None,
             rate: float = 200.0, tenants: int = 24, start_processes: bool = True,
             metrics_base_port: int = 9101) -> int:
    return asyncio.run(_demo(settings, speed, duration, rate, tenants, start_processes,
                             metrics_base_port))
