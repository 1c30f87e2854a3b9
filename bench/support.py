"""What the benchmarks share: the entry point and its header, the stack check, the processes
(through mdmbus.cli.launcher.Launcher, the one launcher of the demo, the tests and the
benchmarks), tenants in the directory and their region stores, the workload, offsets, CPU and
memory meters, progress lines and tables.

Nothing here starts Kafka or PostgreSQL. The processes are the real ones
(``python -m mdmbus process NAME --region R``), started with the environment of the benchmark
plus the shared clock (MDMBUS_CLOCK_SPEED / MDMBUS_CLOCK_ORIGIN), so every other MDMBUS_*
setting (batch size, sweep interval, ...) is the one the user gave, or the default.

Only public names of mdmbus are used (nothing with a leading underscore).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from mdmbus.cli.launcher import Launcher
from mdmbus.clock import Clock
from mdmbus.contract import Registry, default_registry
from mdmbus.regions import REGIONS
from mdmbus.services.simulators.records import UPLOAD_KINDS, RecordFactory
from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, parse_topic, regional_topics, topic_name
from mdmbus.topics import group_name as topic_group_name

__all__ = ["COUNTRY_OF", "UPLOAD_MIX", "PIPELINE", "say", "machine", "code_version",
           "cpu_times", "steal_line", "STEAL_DISTURBED",
           "print_header", "run_cli", "parser", "kafka_options", "pg_connect", "check_stack",
           "open_stores", "launcher",
           "start_gateway", "listening", "write_token", "pipeline_topics", "pipeline_group",
           "lifecycle_group", "point_pipeline_at", "Tenants", "onboard_tenants",
           "delete_tenants", "forget_rows", "RecordMix", "producer", "end_offsets",
           "commit_group", "committed", "wait_committed", "CpuMeter", "cpu_seconds", "rss_mb",
           "postgres_pid", "kafka_pid", "Progress", "percentile", "linear_fit", "table",
           "uuid_from", "at"]

COUNTRY_OF = {"na": "US", "eu": "DE", "ap": "JP"}
#: The process whose consumer groups read the record topics (mdmbus.streams.runtime).
PIPELINE = "pipeline"
#: Relative frequency of the upload kinds (an assumption, no source gives one): devices,
#: assignments and compliance values are the bulk; connector version and extension status rare.
UPLOAD_MIX = {"U1": 15, "U2": 3, "U3": 3, "U4": 5, "U5": 3, "U6": 20, "U7": 10, "U8": 8,
              "U9": 20, "U10": 4, "U11": 2, "U12": 1, "U13": 2, "U14": 4}
if set(UPLOAD_MIX) != set(UPLOAD_KINDS):
    raise ImportError("bench.support.UPLOAD_MIX must name every upload kind")


def say(*parts: Any) -> None:
    """Progress goes to stderr, results (the header and the tables) to stdout."""
    print(*parts, file=sys.stderr, flush=True)


def at(t: float) -> dt.datetime:
    """A Unix time as an aware datetime."""
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


# ----------------------------------------------------------------------------- entry point

def machine() -> str:
    """One line: cores, memory, CPU model, Python, load average (how busy the machine was)."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(row.split()[1]) for row in Path("/proc/meminfo").read_text()
                      .splitlines() if row.startswith("MemTotal"))
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {mem}, {model}, Python {platform.python_version()}, "
            f"load average {load}")


def code_version() -> str:
    """The checkout's commit, '+changes' when the product code (streams/, services/, mdmbus/,
    schemas/) differs from it, '+bench changes' when bench/ does."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        product = git("status", "--porcelain", "--", "streams", "services", "mdmbus", "schemas")
        bench = git("status", "--porcelain", "--", "bench")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return ((head or "unknown") + ("+changes" if product else "")
            + ("+bench changes" if bench else ""))


def _cpu_ticks(stat: str | None = None) -> list[int] | None:
    """user, nice, system, idle, iowait, irq, softirq, steal: the machine's CPU time in clock
    ticks since boot, from /proc/stat's ``cpu`` line (``stat``: its text, read when None);
    None where there is no such line. Guest time is inside user already."""
    try:
        text = Path("/proc/stat").read_text() if stat is None else stat
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(x) for x in fields[1:9]]
            return ticks if len(ticks) == 8 else None
    return None


def cpu_times(stat: str | None = None) -> tuple[int, int] | None:
    """(steal, all) of the machine's CPU time in clock ticks (:func:`_cpu_ticks`). Steal is
    the time the hypervisor ran someone else while this machine's CPUs had work: a
    benchmark's wall clock and caches suffer from it, and no figure of ours says so otherwise."""
    ticks = _cpu_ticks(stat)
    return None if ticks is None else (ticks[7], sum(ticks))


#: A run during which the hypervisor took more than this share of the CPU time says so.
STEAL_DISTURBED = 0.05


def steal_line(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """How much of the machine's CPU time the hypervisor took between two :func:`cpu_times`."""
    if before is None or after is None or after[1] <= before[1]:
        return "host steal during the run: unknown (no /proc/stat)"
    share = (after[0] - before[0]) / (after[1] - before[1])
    verdict = "; over 5 %: the figures are disturbed" if share > STEAL_DISTURBED else ""
    return (f"host steal during the run: {share:.1%} of the machine's CPU time (/proc/stat)"
            f"{verdict}")


def print_header(prog: str) -> None:
    """The machine, the code and the command line (with the MDMBUS_* settings given), before
    the figures, on stdout."""
    print(f"machine: {machine()}")
    print(f"code: {code_version()}")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                   if k.startswith("MDMBUS_"))
    print(f"command: {prog} {shlex.join(sys.argv[1:])}".rstrip())
    if env:
        print(f"environment: {env}")
    sys.stdout.flush()


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """Every benchmark's parser: ``python -m <module>``, its docstring as the help text."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def run_cli(run: Callable[[argparse.Namespace], Awaitable[None]],
            parser: argparse.ArgumentParser) -> None:
    """Every benchmark's entry point: parse, print the header, run, print how much CPU time the
    host's hypervisor took meanwhile, and on Ctrl-C exit 130 (the run's finally blocks have
    stopped what it started and cleaned up by then)."""
    args = parser.parse_args()
    print_header(parser.prog)
    before = cpu_times()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(steal_line(before, cpu_times()))


# ----------------------------------------------------------------------------- connections

def kafka_options(settings: Settings, **extra: Any) -> dict[str, Any]:
    """aiokafka options of the benchmark's own clients (its producers, readers and offset
    tools): the provisioning admin, authenticated as every mdmbus client is
    (mdmbus.connections), as the tests' harness does. On a checkout from before
    mdmbus.connections, the plain bootstrap servers."""
    try:
        from mdmbus.connections import kafka_options as options
        from mdmbus.identities import ADMIN
    except ImportError:
        return {"bootstrap_servers": settings.kafka_bootstrap, **extra}
    return options(settings, ADMIN, **extra)


async def pg_connect(settings: Settings, database: str,
                     connect_to: str | None = None) -> asyncpg.Connection:
    """One connection to ``database`` (or ``connect_to``, another database on its server) as
    the provisioning superuser (mdmbus.connections: over TLS where the stack requires it)."""
    try:
        from mdmbus.connections import pg_connect as connect
    except ImportError:
        return await asyncpg.connect(settings.pg_dsn(database, connect_to=connect_to))
    return await connect(settings, database, None, connect_to)


# ----------------------------------------------------------------------------- the stack

_HINT = ("start the stack first (`.venv/bin/mdmbus stack up` with the same MDMBUS_* settings), "
         "or point MDMBUS_KAFKA_BOOTSTRAP / MDMBUS_PG_* at running, provisioned servers")


async def check_stack(settings: Settings, regions: Iterable[str] = REGIONS) -> None:
    """Exits with a hint when Kafka or PostgreSQL does not answer, or a region's topics are
    missing."""
    try:
        stores = await open_stores(settings, regions, cm=True)
        await stores.close()
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"PostgreSQL at {settings.pg_host}:{settings.pg_port} does not answer "
                         f"({exc}); {_HINT}") from None
    wanted = {name for r in regions for name, _ in regional_topics(r)}
    wanted.add(topic_name(TopicKind.TENANT_LIFECYCLE))
    consumer = AIOKafkaConsumer(**kafka_options(settings, request_timeout_ms=10_000))
    try:
        await asyncio.wait_for(consumer.start(), 20)
        missing = wanted - await consumer.topics()
    except Exception as exc:  # aiokafka's own errors (KafkaConnectionError, ...) and timeouts
        raise SystemExit(f"Kafka at {settings.kafka_bootstrap} does not answer ({exc!r}); "
                         f"{_HINT}") from None
    finally:
        await consumer.stop()
    if missing:
        raise SystemExit(f"topics {sorted(missing)} are missing; {_HINT}")


async def open_stores(settings: Settings, regions: Iterable[str] = REGIONS, *,
                      cm: bool = False, max_size: int = 3) -> Stores:
    """Pools to the region stores, the directory (and the CM database), as the benchmark's
    own client (application ``mdmbus-bench``). The schemas are provisioning's business."""
    return await Stores(settings, "mdmbus-bench").start(regions, cm=cm, max_size=max_size)


def launcher(settings: Settings, name: str, speed: float = 1.0,
             env: Mapping[str, str] | None = None, origin: float | None = None) -> Launcher:
    """The one launcher, its logs under $MDMBUS_STATE_DIR/bench-logs/<name>-<time>/, on a
    shared clock of ``speed`` (every process started by it gets the same clock)."""
    log_dir = settings.state_dir / "bench-logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    base = dict(os.environ)
    base.update(env or {})
    return Launcher(log_dir, Clock(speed, origin if origin is not None else time.time()), base)


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


async def start_gateway(procs: Launcher, settings: Settings, region: str,
                        timeout_s: float = 60) -> str:
    """Starts ``region``'s gateway (``all``: one process for every region) and waits until it
    listens on each of its ports; returns its key."""
    ports = [settings.gateway_ports[r] for r in (REGIONS if region == "all" else [region])]
    busy = [p for p in ports if listening(p)]
    if busy:
        raise SystemExit(f"something already listens on {busy} (a gateway of another run?): "
                         "stop it first")
    key = procs.start("gateway", region)
    deadline = time.monotonic() + timeout_s
    while not all(listening(p) for p in ports):
        procs.assert_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {region} gateway did not listen within {timeout_s:.0f} s; "
                               f"its log:\n{procs.tail(key)}")
        await asyncio.sleep(0.2)
    return key


def write_token(settings: Settings, tokens_dir: Path, tenant: str, region: str,
                ttl_s: float = 24 * 3600) -> Path:
    """The tenant's CM connector token file (what tests/integration/harness.py connect_cm and
    the demo write): the connector picks it up within a few seconds."""
    from mdmbus.stack import issuer
    from mdmbus.stack.pki import write_private
    path = tokens_dir / f"{tenant}.json"
    write_private(path, json.dumps({
        "tenant_id": tenant, "gateway": settings.gateway_url(region),
        "token": issuer(settings).issue(tenant, "connector", ttl_s)}).encode())
    return path


# ----------------------------------------------------------------------------- the pipeline

def pipeline_topics(region: str) -> list[str]:
    """The record topics a region's pipeline reads (the transit topics it is a reader of)."""
    return [name for name, spec in regional_topics(region) if PIPELINE in spec.readers]


def pipeline_group(region: str) -> str:
    """The consumer group of a region's record runtime (``mdmbus-<region>-pipeline``)."""
    return topic_group_name(PIPELINE, region)


def lifecycle_group(regions: Sequence[str]) -> str:
    """The faust app id (the lifecycle agent's group) of a worker serving ``regions``."""
    from mdmbus.streams.app import lifecycle_app_id  # imports faust: only when needed
    return lifecycle_app_id(tuple(regions))


async def point_pipeline_at(settings: Settings, region: str,
                            start: Mapping[TopicPartition, int] | None = None,
                            worker_regions: Sequence[str] | None = None) -> None:
    """Points the region's pipeline group at the end of its record topics (so data of earlier
    runs is not read), except the partitions in ``start``; and the lifecycle group of a
    worker serving ``worker_regions`` (default: the region) at the end of the lifecycle topic
    (so the lifecycle events of earlier runs are not replayed during the measurement)."""
    offsets: dict[TopicPartition, int] = {}
    for name in pipeline_topics(region):
        offsets.update(await end_offsets(settings, name))
    offsets.update(start or {})
    await commit_group(settings, pipeline_group(region), offsets)
    await commit_group(settings, lifecycle_group(worker_regions or (region,)),
                       await end_offsets(settings, topic_name(TopicKind.TENANT_LIFECYCLE)))


# ----------------------------------------------------------------------------- tenants

def uuid_from(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Tenants:
    ids: list[str]
    region_of: dict[str, str]

    def in_region(self, region: str) -> list[uuid.UUID]:
        return [uuid.UUID(t) for t in self.ids if self.region_of[t] == region]

    @property
    def regions(self) -> list[str]:
        return sorted(set(self.region_of.values()))


async def onboard_tenants(stores: Stores, n: int, now: dt.datetime, rng: random.Random,
                          regions: Sequence[str], state: str = "active",
                          purge_at: Sequence[dt.datetime] | None = None) -> Tenants:
    """``n`` fresh tenants spread over ``regions`` (round robin), written into the tenant
    directory and their region's ``tenants`` table as the onboarding leaves them
    (services.rules.residency.onboard: directory.claim, then the region row).

    With ``state='retention'`` and ``purge_at`` (one a tenant), they are tenants whose
    subscription ended, as services.rules.retention.end_subscription leaves them (in both).
    Written with COPY: onboarding 10,000 tenants one by one would outlast a phase's lead time.
    """
    ids, region_of = [], {}
    for i in range(n):
        tenant = uuid_from(rng)
        ids.append(tenant)
        region_of[tenant] = regions[i % len(regions)]
    retention = purge_at is not None
    directory_rows, by_region = [], {r: [] for r in regions}
    for i, tenant in enumerate(ids):
        region = region_of[tenant]
        until = now if retention else None
        purge = purge_at[i] if retention else None
        directory_rows.append((uuid.UUID(tenant), region, COUNTRY_OF[region], state, now,
                               now if retention else None, until, purge))
        by_region[region].append((uuid.UUID(tenant), COUNTRY_OF[region], region, state, now,
                                  now if retention else None, until, purge))
    await stores.directory_pool.copy_records_to_table(
        "tenant_directory", records=directory_rows,
        columns=["tenant_id", "region", "country", "state", "onboarded_at", "ended_at",
                 "read_only_until", "purge_at"])
    for region, rows in by_region.items():
        if rows:
            await stores.region(region).copy_records_to_table(
                "tenants", records=rows,
                columns=["tenant_id", "country", "region", "state", "onboarded_at",
                         "subscription_ended_at", "read_only_until", "purge_at"])
    return Tenants(ids, region_of)


async def delete_tenants(stores: Stores, tenants: Tenants | Mapping[str, str]) -> int:
    """Removes every row the benchmark left for these tenants (``Tenants`` or tenant ->
    region), everywhere: region stores, directory, CM database. Returns the records deleted."""
    region_of = tenants.region_of if isinstance(tenants, Tenants) else dict(tenants)
    deleted = 0
    for region in set(region_of.values()):
        ids = [uuid.UUID(t) for t, r in region_of.items() if r == region]
        pool = stores.region(region)
        async with pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", ids)
            deleted += int(status.split()[-1])
            for table_ in ("device_sessions", "deletion_audit", "dead_letters",
                           "erasure_receipts", "tenants", "purged_tenants"):
                await conn.execute(f"DELETE FROM {table_} WHERE tenant_id = ANY($1::uuid[])",
                                   ids)
    ids = [uuid.UUID(t) for t in region_of]
    await stores.directory_pool.execute(
        "DELETE FROM tenant_directory WHERE tenant_id = ANY($1::uuid[])", ids)
    await stores.directory_pool.execute(
        "DELETE FROM lifecycle_refusals WHERE tenant_id = ANY($1::uuid[])", ids)
    if stores.cm is not None:
        await stores.cm.execute(
            "DELETE FROM relayed_records WHERE tenant_id = ANY($1::uuid[])", ids)
    return deleted


async def forget_rows(stores: Stores, tenants: Tenants) -> None:
    """Deletes the records of these tenants (keeping the tenants) and vacuums, so that the
    next run starts from a table in the same state."""
    for region in tenants.regions:
        pool = stores.region(region)
        await pool.execute("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])",
                           tenants.in_region(region))
        await pool.execute("VACUUM ANALYZE records")


# ----------------------------------------------------------------------------- workload

class RecordMix:
    """Valid records of the kinds in ``mix`` (default: the upload kinds in UPLOAD_MIX
    proportions), for random tenants, each on its kind's topic in its tenant's region.

    The kind-specific fields come from a few RecordFactory records per kind (building each
    record with the factory would cost more than the pipeline spends on it); every record gets
    its own record id, tenant and event time.
    """

    def __init__(self, tenants: Tenants, seed: int = 0, registry: Registry | None = None,
                 mix: Mapping[str, int] = UPLOAD_MIX, templates: int = 32) -> None:
        self.registry = registry or default_registry()
        self.rng = random.Random(seed)
        factory = RecordFactory(seed, self.registry)
        self.tenants = tenants.ids
        self.region_of = tenants.region_of
        self.kinds = list(mix)
        self.cum = list(_cumulative(mix.values()))
        self.templates = {k: [factory.make(k, factory.uuid(), 0) for _ in range(templates)]
                          for k in self.kinds}
        self.topic_kind = {k: self.registry.spec(k).topic for k in self.kinds}

    def make(self, event_time_ms: int, kind: str | None = None) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        kind = kind or rng.choices(self.kinds, cum_weights=self.cum)[0]
        template = rng.choice(self.templates[kind])
        record = dict(template)
        env = dict(template["envelope"])
        env["record_id"] = uuid_from(rng)
        env["tenant_id"] = rng.choice(self.tenants)
        env["event_time"] = event_time_ms
        record["envelope"] = env
        return kind, record

    def encode(self, kind: str, record: dict[str, Any]) -> tuple[str, bytes, bytes]:
        """(topic, key, value) as the pipeline receives it: the kind's topic in the region of
        the record's tenant."""
        region = self.region_of[record["envelope"]["tenant_id"]]
        return (topic_name(self.topic_kind[kind], region), self.registry.key(kind, record),
                self.registry.codec.encode(kind, record))


def _cumulative(weights: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def producer(settings: Settings, linger_ms: int = 5, **kw: Any) -> AIOKafkaProducer:
    """Like the gateway's and the device side's producers: acks=all, idempotent."""
    return AIOKafkaProducer(**kafka_options(settings, acks="all", enable_idempotence=True,
                                            linger_ms=linger_ms, **kw))


# ----------------------------------------------------------------------------- offsets

def _partitions(topic: str) -> list[TopicPartition]:
    """The partitions of an mdmbus topic, as the catalogue declares them."""
    return [TopicPartition(topic, p) for p in range(parse_topic(topic)[0].partitions)]


async def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """Per partition of ``topic``, the offset after the last message."""
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        return await consumer.end_offsets(_partitions(topic))
    finally:
        await consumer.stop()


#: How long a group may keep a member after its process ended (the broker's session timeout
#: for a member that did not leave, plus a margin) before another process of it is assumed.
GROUP_EMPTY_WAIT_S = 60.0


async def commit_group(settings: Settings, group: str,
                       offsets: Mapping[TopicPartition, int],
                       wait_s: float = GROUP_EMPTY_WAIT_S) -> None:
    """Sets a consumer group's committed offsets. While the group has a live member the
    broker refuses the commit: a member of a process this run just stopped stays until its
    session times out, so the commit is retried for ``wait_s``; after that the member is
    another process of this group on this stack (a benchmark, the demo, tests?) and this
    exits."""
    deadline = time.monotonic() + wait_s
    while True:
        consumer = AIOKafkaConsumer(**kafka_options(settings, group_id=group,
                                                    enable_auto_commit=False))
        await consumer.start()
        try:
            consumer.assign(list(offsets))
            await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
            return
        except CommitFailedError:
            if time.monotonic() > deadline:
                raise SystemExit(f"consumer group {group} has a live member after "
                                 f"{wait_s:.0f} s: another process of it runs on this stack "
                                 "(a benchmark, the demo, tests?); stop it first, benchmarks "
                                 "must run alone") from None
        finally:
            await consumer.stop()
        await asyncio.sleep(1.0)  # the member's session timing out; retried until the deadline


async def committed(admin: AIOKafkaAdminClient, group: str,
                    tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    got = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    return {tp: (got[tp].offset if tp in got and got[tp].offset >= 0 else 0) for tp in tps}


async def wait_committed(settings: Settings, group: str, end: Mapping[TopicPartition, int],
                         start: Mapping[TopicPartition, int], procs: Launcher | None = None,
                         stall_s: float = 120.0, label: str = "committed",
                         on_progress: Callable[[int], None] | None = None) -> None:
    """Waits until ``group`` has committed up to ``end`` on every partition; gives up after
    ``stall_s`` seconds without progress (or when a process of ``procs`` exits)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    tps = list(end)
    total = sum(end[tp] - start[tp] for tp in tps)
    progress = Progress(label, total)
    last, last_change = -1, time.monotonic()
    try:
        while True:
            offsets = await committed(admin, group, tps)
            done = sum(max(0, min(offsets[tp], end[tp]) - start[tp]) for tp in tps)
            if on_progress:
                on_progress(done)
            progress.update(done)
            if done >= total:
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise RuntimeError(f"{label}: no progress for {stall_s:.0f} s at "
                                   f"{done:,}/{total:,}"
                                   + (f"; logs in {procs.log_dir}" if procs else ""))
            if procs is not None:
                procs.assert_alive()
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


# ----------------------------------------------------------------------------- CPU, memory

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, tid: int | None = None) -> tuple[int, int, float] | None:
    """(parent pid, start time, CPU seconds user+system) of a process or one of its threads."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far; nan when unknown."""
    st = _stat(pid) if pid else None
    return st[2] if st else float("nan")


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] == ppid:
                out.append(int(entry))
    return out


def _machine_busy(stat: str | None = None) -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (:func:`_cpu_ticks`). Busy is
    what this machine's processes and kernel ran: not idle, not waiting for a disk, and not
    the time the hypervisor took (steal), which no process here used."""
    ticks = _cpu_ticks(stat)
    if ticks is None:
        raise OSError("/proc/stat has no cpu line with steal time: cannot meter the machine")
    total = sum(ticks)
    return (total - ticks[3] - ticks[4] - ticks[7]) / _TICK, total / _TICK


async def postgres_pid(pool: asyncpg.Pool) -> int | None:
    """The postmaster's pid (the parent of a backend), when PostgreSQL runs on this machine."""
    backend = await pool.fetchval("SELECT pg_backend_pid()")
    st = _stat(backend)
    return st[0] if st else None


def kafka_pid(settings: Settings) -> int | None:
    """The embedded broker's pid (from its pid file), None for a broker run elsewhere."""
    if settings.kafka_external:
        return None
    from mdmbus.stack.kafka import running_pid
    return running_pid(settings)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, MB (VmRSS of /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class CpuMeter:
    """CPU seconds spent by groups of processes between two snapshots, and by the machine.

    Groups are named lists of pids; ``postmaster`` counts PostgreSQL's postmaster and every
    backend (backends that start and end between the snapshots are missed: the benchmarks'
    processes hold pooled connections). ``threads_of`` splits one process into its main thread
    and the rest. What the machine spent beyond the groups is the rest of the machine's work
    (other jobs, this benchmark's own client...).
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], postmaster: int | None = None,
                 threads_of: int | None = None) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.postmaster = postmaster
        self.threads_of = threads_of
        self.start = self._snapshot()
        self.started = time.monotonic()

    def _snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {}
        for name, pids in self.groups.items():
            snap[name] = {(p, st[1]): st[2] for p in pids if (st := _stat(p)) is not None}
        if self.postmaster:
            pids = [self.postmaster] + _children(self.postmaster)
            snap["postgres"] = {(p, st[1]): st[2] for p in pids if (st := _stat(p)) is not None}
        if self.threads_of:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{self.threads_of}/task")]
            except OSError:
                tids = []
            snap["threads"] = {t: st[2] for t in tids
                               if (st := _stat(self.threads_of, t)) is not None}
        snap["machine"] = _machine_busy()
        return snap

    def stop(self) -> list[tuple[str, float, float]]:
        """Rows (what, CPU seconds, cores busy on average) since the meter was made: one per
        group, 'postgres', the threads split, 'rest of the machine' and 'machine total'."""
        end = self._snapshot()
        wall = time.monotonic() - self.started
        rows, known = [], 0.0
        for name in [*self.groups, *(["postgres"] if self.postmaster else [])]:
            spent = sum(cpu - self.start[name].get(key, 0.0) for key, cpu in end[name].items())
            known += spent
            rows.append((name, spent, spent / wall))
        if self.threads_of:
            main = end["threads"].get(self.threads_of, 0.0) - \
                self.start["threads"].get(self.threads_of, 0.0)
            rest = sum(cpu - self.start["threads"].get(t, 0.0)
                       for t, cpu in end["threads"].items() if t != self.threads_of)
            rows.append(("  of which its main thread", main, main / wall))
            rows.append(("  of which its other threads", rest, rest / wall))
        busy = end["machine"][0] - self.start["machine"][0]
        rows.append(("rest of the machine", busy - known, (busy - known) / wall))
        rows.append(("machine total", busy, busy / wall))
        return rows


# ----------------------------------------------------------------------------- output

class Progress:
    """A progress line on stderr every ``every`` seconds: done/total, rate so far, elapsed."""

    def __init__(self, label: str, total: int | None = None, every: float = 5.0,
                 unit: str = "records", done: int = 0) -> None:
        """``done``: already done when the clock starts (not counted in the rate)."""
        self.label, self.total, self.every, self.unit = label, total, every, unit
        self.started = time.monotonic()
        self.last = self.started
        self.base = done

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        rate = (done - self.base) / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:,} ({100 * done / self.total:.0f}%)" if self.total else ""
        say(f"  {self.label}: {done:,}{of} {self.unit}, {rate:,.0f}/s so far, "
            f"{elapsed:.0f} s{', ' + extra if extra else ''}")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (b, standard error of b, a)."""
    n = len(xs)
    if n < 3:
        return math.nan, math.nan, math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    resid = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return b, math.sqrt(resid / (n - 2) / sxx), a


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Prints an aligned table (first column left, the others right) to stdout."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print("-" * len(line))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
