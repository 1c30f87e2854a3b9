"""What the benchmarks share: the stack check, the pipeline processes, the workload, offsets,
progress lines and tables.

Nothing here starts Kafka or PostgreSQL. The processes are the real ones
(``python -m mdmbus process pipeline|cm-connector|sweeper``), started with the environment
of the benchmark plus the shared clock (MDMBUS_CLOCK_SPEED / MDMBUS_CLOCK_ORIGIN), so every
other MDMBUS_* setting (batch size, sweep interval, ...) is the one the user gave, or the default.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.contract import Registry, default_registry
from mdmbus.regions import REGIONS, region_database
from mdmbus.settings import Settings
from mdmbus.services.simulators.records import UPLOAD_KINDS, RecordFactory
from mdmbus.services.stores.schema import ensure_region_schema

__all__ = ["PIPELINE_GROUP", "CM_GROUP", "PIPELINE_TOPICS", "COUNTRY_OF", "REGION_SHARE",
           "UPLOAD_MIX", "Processes", "Tenants", "RecordMix", "Progress", "check_stack",
           "region_pools", "close_pools", "onboard_tenants", "delete_tenants", "end_offsets",
           "commit_group", "committed", "fast_forward", "producer", "percentile", "table",
           "machine", "say", "linear_fit", "uuid_from", "CpuMeter", "rss_mb", "forget_rows",
           "postgres_pid", "kafka_pid", "code_version"]

#: The faust app id is the pipeline's consumer group (streams/app.py).
PIPELINE_GROUP = "mdmbus-pipeline"
#: services/cm_connector.py
CM_GROUP = "mdmbus-cm-connector"
#: Every topic a pipeline worker reads (streams/ingest.py, acks.py, sessions.py, lifecycle.py).
PIPELINE_TOPICS = (topics.UPLOAD, topics.RELAY, topics.RELAY_ACK, topics.DEVICE_SESSIONS,
                   topics.DEVICE_COMMANDS, topics.TENANT_LIFECYCLE)

COUNTRY_OF = {"na": "US", "eu": "DE", "ap": "JP"}
#: Share of tenants per region (an assumption: most tenants in NA, then EU, then AP).
REGION_SHARE = {"na": 0.45, "eu": 0.35, "ap": 0.20}
#: Relative frequency of the upload kinds (an assumption, no source gives one): devices,
#: assignments and compliance values are the bulk; connector version and extension status rare.
UPLOAD_MIX = {"U1": 15, "U2": 3, "U3": 3, "U4": 5, "U5": 3, "U6": 20, "U7": 10, "U8": 8,
              "U9": 20, "U10": 4, "U11": 2, "U12": 1, "U13": 2, "U14": 4}
if set(UPLOAD_MIX) != set(UPLOAD_KINDS):
    raise ImportError("bench.support.UPLOAD_MIX must name every upload kind")


def say(*parts: Any) -> None:
    """Progress goes to stderr, results (the tables) to stdout."""
    print(*parts, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the stack

async def check_stack(settings: Settings) -> None:
    """Exits with a hint when Kafka or PostgreSQL does not answer."""
    hint = ("start the stack first (`.venv/bin/mdmbus stack up` with the same MDMBUS_* "
            "settings), or point MDMBUS_KAFKA_BOOTSTRAP / MDMBUS_PG_* at running servers")
    try:
        conn = await asyncpg.connect(settings.pg_dsn(region_database(REGIONS[0])), timeout=10)
        await conn.close()
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"PostgreSQL at {settings.pg_server(region_database(REGIONS[0]))} "
                         f"does not answer ({exc}); {hint}") from None
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(consumer.start(), 20)
        missing = set(PIPELINE_TOPICS) - await consumer.topics()
    except Exception as exc:  # aiokafka's own errors (KafkaConnectionError, ...) and timeouts
        raise SystemExit(f"Kafka at {settings.kafka_bootstrap} does not answer ({exc!r}); "
                         f"{hint}") from None
    finally:
        await consumer.stop()
    if missing:
        raise SystemExit(f"topics {sorted(missing)} are missing; {hint}")


async def region_pools(settings: Settings, max_size: int = 2) -> dict[str, asyncpg.Pool]:
    """A pool per region store, its schema applied (idempotent, as every process does)."""
    pools = {}
    for region in REGIONS:
        pool = await asyncpg.create_pool(settings.pg_dsn(region_database(region)), min_size=1,
                                         max_size=max_size)
        async with pool.acquire() as conn:
            await ensure_region_schema(conn)
        pools[region] = pool
    return pools


async def close_pools(pools: dict[str, asyncpg.Pool]) -> None:
    for pool in pools.values():
        await pool.close()


def machine() -> str:
    """One line: cores, memory, CPU model, load average (so a reader sees how busy it was)."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal"))
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {mem}, {model}, Python {platform.python_version()}, "
            f"load average {load}, code {code_version()}")


def code_version() -> str:
    """The checkout's commit, '+changes' when streams/, services/ or mdmbus/ differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "streams", "services", "mdmbus"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


# ----------------------------------------------------------------------------- processes

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


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] == ppid:
                out.append(int(entry))
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK


async def postgres_pid(pools: dict[str, asyncpg.Pool]) -> int | None:
    """The postmaster's pid (the parent of a backend), when PostgreSQL runs on this machine."""
    backend = await next(iter(pools.values())).fetchval("SELECT pg_backend_pid()")
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

    Groups are named lists of pids; a pid group ``"postgres"`` given as the postmaster's pid
    counts the postmaster and every backend. What the machine spent beyond the groups is the
    rest of the machine's work (other jobs, this benchmark's client...).
    """

    def __init__(self, groups: dict[str, list[int]], postmaster: int | None = None,
                 threads_of: int | None = None) -> None:
        self.groups = groups
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
        """Rows (what, CPU seconds, cores busy on average) since the meter was made."""
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


@dataclass
class Processes:
    """The pipeline's real processes on one shared clock; each one logs to its own file."""

    settings: Settings
    speed: float = 1.0
    origin: float = field(default_factory=time.time)
    log_dir: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log_dir is None:
            self.log_dir = (self.settings.state_dir / "bench-logs" /
                            time.strftime("%Y%m%d-%H%M%S"))
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def clock(self) -> Clock:
        return Clock(self.speed, self.origin)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, MDMBUS_CLOCK_SPEED=repr(self.speed),
                   MDMBUS_CLOCK_ORIGIN=repr(self.origin), PYTHONUNBUFFERED="1")
        env.setdefault("MDMBUS_METRICS_PORT", "0")
        return env

    def start(self, name: str, label: str | None = None,
              profile_to: Path | None = None) -> subprocess.Popen:
        """Starts ``mdmbus process NAME``; with ``profile_to``, under pyinstrument sampling every
        5 ms (a pyisession file is written there when the process ends)."""
        label = label or name
        cmd = [sys.executable, "-m", "mdmbus", "process", name]
        if profile_to is not None:
            cmd = [sys.executable, "-m", "pyinstrument", "-i", "0.005", "-r", "pyisession",
                   "-o", str(profile_to), "-m", "mdmbus", "process", name]
        log = open(self.log_dir / f"{label}.log", "ab")
        self.procs[label] = subprocess.Popen(cmd, env=self.env(), stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return self.procs[label]

    def pid(self, label: str) -> int:
        return self.procs[label].pid

    def check_alive(self) -> None:
        for label, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{label} exited with {proc.returncode}; last lines of its "
                                   f"log:\n{self.tail(label)}")

    def tail(self, label: str, lines: int = 30) -> str:
        path = self.log_dir / f"{label}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""

    def stop(self, label: str | None = None, timeout: float = 60.0) -> None:
        """SIGTERM (a graceful stop: faust commits, pyinstrument writes its report), then
        SIGKILL after ``timeout``."""
        labels = [label] if label else list(self.procs)
        for name in labels:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in labels:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ----------------------------------------------------------------------------- workload

def uuid_from(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Tenants:
    ids: list[str]
    region_of: dict[str, str]

    def in_region(self, region: str) -> list[uuid.UUID]:
        return [uuid.UUID(t) for t in self.ids if self.region_of[t] == region]


async def onboard_tenants(pools: dict[str, asyncpg.Pool], n: int, now: dt.datetime,
                          rng: random.Random, share: dict[str, float] = REGION_SHARE,
                          state: str = "active",
                          purge_at: Sequence[dt.datetime] | None = None) -> Tenants:
    """Fresh tenants written straight into their region stores, as
    services.rules.residency.onboard writes them (country -> region), at least one a region.

    With ``state='retention'`` and ``purge_at`` (one a tenant), they are tenants whose
    subscription ended, as services.rules.retention.end_subscription leaves them.
    """
    regions = list(share)
    ids, region_of = [], {}
    for i in range(n):
        region = regions[i] if i < len(regions) else rng.choices(regions, list(share.values()))[0]
        tenant = uuid_from(rng)
        ids.append(tenant)
        region_of[tenant] = region
    for region, pool in pools.items():
        idx = [i for i, t in enumerate(ids) if region_of[t] == region]
        rows = [(uuid.UUID(ids[i]), COUNTRY_OF[region], region, state, now,
                 now if purge_at else None, now if purge_at else None,
                 purge_at[i] if purge_at else None) for i in idx]
        if rows:
            await pool.copy_records_to_table(
                "tenants", records=rows,
                columns=["tenant_id", "country", "region", "state", "onboarded_at",
                         "subscription_ended_at", "read_only_until", "purge_at"])
    return Tenants(ids, region_of)


async def delete_tenants(pools: dict[str, asyncpg.Pool], tenants: Tenants) -> int:
    """Removes every row the benchmark left for these tenants; returns the records deleted."""
    deleted = 0
    for region, pool in pools.items():
        ids = tenants.in_region(region)
        if not ids:
            continue
        async with pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", ids)
            deleted += int(status.split()[-1])
            await conn.execute("DELETE FROM device_sessions WHERE tenant_id = ANY($1::uuid[])", ids)
            await conn.execute("DELETE FROM deletion_audit WHERE tenant_id = ANY($1::uuid[])", ids)
            await conn.execute("DELETE FROM tenants WHERE tenant_id = ANY($1::uuid[])", ids)
            await conn.execute("DELETE FROM purged_tenants WHERE tenant_id = ANY($1::uuid[])", ids)
    return deleted


async def forget_rows(pools: dict[str, asyncpg.Pool], tenants: Tenants) -> None:
    """Deletes the records of these tenants (keeping the tenants) and vacuums, so that the
    next run starts from a table in the same state."""
    for region, pool in pools.items():
        ids = tenants.in_region(region)
        if ids:
            await pool.execute("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", ids)
        await pool.execute("VACUUM ANALYZE records")


class RecordMix:
    """Valid records of the upload kinds in UPLOAD_MIX proportions, for random tenants.

    The kind-specific fields come from a few RecordFactory records per kind (building each
    record with the factory would cost more than the pipeline spends on it); every record gets
    its own record id, tenant and event time.
    """

    def __init__(self, tenants: Tenants, seed: int = 0, registry: Registry | None = None,
                 mix: dict[str, int] = UPLOAD_MIX, templates: int = 32) -> None:
        self.registry = registry or default_registry()
        self.rng = random.Random(seed)
        factory = RecordFactory(seed, self.registry)
        self.tenants = tenants.ids
        self.kinds = list(mix)
        self.cum = list(_cumulative(mix.values()))
        self.templates = {k: [factory.make(k, factory.uuid(), 0) for _ in range(templates)]
                          for k in self.kinds}
        self.topic = {k: self.registry.spec(k).topic for k in self.kinds}

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
        """(topic, key, value) as the pipeline receives it."""
        return (self.topic[kind], self.registry.key(kind, record),
                self.registry.codec.encode(kind, record))


def _cumulative(weights: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def producer(settings: Settings, linger_ms: int = 5, **kw: Any) -> AIOKafkaProducer:
    """Like the CM side's producer (services/cm_connector.py): acks=all, idempotent."""
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                            enable_idempotence=True, linger_ms=linger_ms, **kw)


# ----------------------------------------------------------------------------- offsets

async def end_offsets(settings: Settings, topic: str,
                      partitions: Iterable[int] | None = None) -> dict[TopicPartition, int]:
    """Per partition (``partitions``, or the declared topic's), the offset after the last."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = (partitions if partitions is not None else
                 consumer.partitions_for_topic(topic) or range(topics.topic(topic).partitions))
        return await consumer.end_offsets([TopicPartition(topic, p) for p in sorted(parts)])
    finally:
        await consumer.stop()


async def commit_group(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Sets a consumer group's committed offsets; exits when the group has a live member
    (another pipeline process runs on this stack, e.g. a benchmark or the demo)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
    except CommitFailedError:
        raise SystemExit(f"consumer group {group} has a live member: another {group} process "
                         "runs on this stack (a benchmark, the demo, tests?); stop it first, "
                         "benchmarks must run alone") from None
    finally:
        await consumer.stop()


async def committed(admin: AIOKafkaAdminClient, group: str,
                    tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    got = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    return {tp: (got[tp].offset if tp in got and got[tp].offset >= 0 else 0) for tp in tps}


async def fast_forward(settings: Settings, group: str, topic_names: Iterable[str],
                       start: dict[TopicPartition, int] | None = None) -> None:
    """Points ``group`` at the end of each topic (so data of earlier runs is not read), except
    the partitions in ``start``, which it points there."""
    offsets: dict[TopicPartition, int] = {}
    for name in topic_names:
        offsets.update(await end_offsets(settings, name))
    offsets.update(start or {})
    await commit_group(settings, group, offsets)


# ----------------------------------------------------------------------------- output

class Progress:
    """A progress line every ``every`` seconds: done/total, rate so far, elapsed."""

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


def run_cli(run: Callable[[argparse.Namespace], Awaitable[None]],
            parser: argparse.ArgumentParser) -> None:
    """Every benchmark's entry point: parse, run, and on Ctrl-C exit 130 (the run's finally
    blocks have stopped what it started and cleaned up by then)."""
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
