"""Draining a production with real pipeline workers of one region: `mdmbus process pipeline
--region R` (one or several, in the region's group, sharing its partitions), started through
the one launcher (mdmbus.cli.launcher.Launcher); the rate is taken from the store, the CPU of
every process from /proc."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from bench.support import (CpuMeter, Progress, Tenants, committed, kafka_options, kafka_pid,
                           launcher,
                           percentile, pipeline_group, point_pipeline_at, postgres_pid, say)
from bench.throughput.produce import Produced
from bench.levers_off import prefix as levers_off_prefix
from bench.unsealed import prefix as unsealed_prefix

__all__ = ["DrainResult", "drain", "stored_times", "WORKERS"]

#: The CPU meter's name for the pipeline workers.
WORKERS = "pipeline worker(s)"


@dataclass
class DrainResult:
    label: str
    workers: int
    records: int
    stored: int
    first: float
    last: float
    p10: float
    p90: float
    #: Seconds from the workers' start to their first commit (imports, pools, group join).
    startup: float
    #: (what, CPU seconds, cores) from the first commit to the last, as CpuMeter.stop() gives.
    cpu: list[tuple[str, float, float]] = field(default_factory=list)
    #: Records committed while the CPU meter ran (first commit -> last).
    cpu_records: int = 0
    profiled: bool = False
    log_dir: str = ""
    #: False: the workers stored bodies in clear (bench.unsealed), to measure what sealing costs.
    sealed: bool = True
    #: The workers' MDMBUS_WRITES_IN_FLIGHT (None: the setting as the environment gives it).
    in_flight: int | None = None
    #: The Quix Streams peer (bench.throughput.peer), not mdmbus.
    peer: bool = False
    #: False: the workers ran with the CPU levers off (bench.levers_off).
    levers: bool = True
    #: CPU seconds the workers' own count (mdmbus_seal_cpu_seconds_total) says they spent
    #: sealing while the CPU meter ran; None where they did not count (the peer, unsealed).
    seal_cpu_s: float | None = None

    def seal_us(self) -> float:
        """Sealing's CPU microseconds a record, as the workers timed it while they drained."""
        if self.seal_cpu_s is None or not self.cpu_records:
            return float("nan")
        return 1e6 * self.seal_cpu_s / self.cpu_records

    @property
    def rate(self) -> float:
        return self.stored / (self.last - self.first) if self.last > self.first else float("nan")

    @property
    def steady_rate(self) -> float:
        return 0.8 * self.stored / (self.p90 - self.p10) if self.p90 > self.p10 else float("nan")

    def cpu_us(self, what: str | None = None) -> float:
        """CPU microseconds a record: of one process group, or of every metered process (the
        workers, the broker, PostgreSQL; not the rest of the machine)."""
        rows = [(w, s) for w, s, _ in self.cpu
                if not w.startswith(("rest of", "machine", "  of which"))]
        spent = sum(s for w, s in rows if what is None or w == what)
        return 1e6 * spent / self.cpu_records if self.cpu_records else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seal_seconds(http: aiohttp.ClientSession, ports: list[int]) -> float:
    """The workers' mdmbus_seal_cpu_seconds_total, summed (every region label)."""
    total = 0.0
    for port in ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            if family.name == "mdmbus_seal_cpu_seconds":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def stored_times(stores: Stores, tenants: Tenants) -> list[float]:
    """stored_at_real of every row of these tenants, as Unix times."""
    times: list[float] = []
    for region in tenants.regions:
        rows = await stores.region(region).fetch(
            "SELECT extract(epoch FROM stored_at_real)::float8 AS t FROM records"
            " WHERE tenant_id = ANY($1::uuid[])", tenants.in_region(region))
        times += [r["t"] for r in rows]
    return times


async def drain(settings: Settings, stores: Stores, tenants: Tenants, region: str,
                produced: Produced, workers: int, label: str,
                prefix: tuple[str, ...] = (), stall_s: float = 120.0,
                sealed: bool = True, in_flight: int | None = None,
                levers: bool = True) -> DrainResult:
    """Starts ``workers`` pipeline workers of ``region`` on the produced records (the first
    one wrapped in ``prefix``, e.g. a profiler; every one in bench.unsealed unless ``sealed``)
    and waits until their group has committed all of them; stops them (SIGTERM: a graceful
    stop) and reads the rate from the store."""
    clear = (() if sealed else unsealed_prefix()) + (() if levers else levers_off_prefix())
    await point_pipeline_at(settings, region, start=produced.start)
    procs = launcher(settings, f"throughput-{workers}w", env=None if in_flight is None else
                     {"MDMBUS_WRITES_IN_FLIGHT": str(in_flight)})
    group = pipeline_group(region)
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    tps = sorted(produced.end, key=lambda tp: tp.partition)
    total = sum(produced.end[tp] - produced.start[tp] for tp in tps)
    say(f"{label}: {workers} worker(s) of {region} on {total:,} records (logs in "
        f"{procs.log_dir})")
    began = time.monotonic()
    startup = float("nan")
    cpu: list[tuple[str, float, float]] = []
    metered_from = 0
    ports = [_free_port() for _ in range(workers)]
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    sealing_from: float | None = None
    seal_cpu_s: float | None = None
    try:
        keys = [procs.start("pipeline", region, key=f"pipeline-{region}-{i + 1}",
                            prefix=(prefix if i == 0 else ()) + clear, metrics_port=ports[i])
                for i in range(workers)]
        pids = [procs.procs[k].pid for k in keys]
        postmaster = await postgres_pid(stores.directory_pool)
        broker = kafka_pid(settings)
        progress: Progress | None = None
        meter: CpuMeter | None = None
        last_done, last_change = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            procs.assert_alive()
            offsets = await committed(admin, group, tps)
            done = sum(max(0, offsets[tp] - produced.start[tp]) for tp in tps)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            if done and progress is None:
                startup = time.monotonic() - began
                say(f"  first commit after {startup:.1f} s (worker start-up)")
                progress = Progress(label, total, done=done)
                # Metered from the first commit on: start-up (imports, connections, the group
                # join) is left out; the steady drain is what is divided per record.
                groups = {WORKERS: pids}
                if broker:
                    groups["kafka broker"] = [broker]
                meter = CpuMeter(groups, postmaster=postmaster,
                                 threads_of=pids[0] if workers == 1 else None)
                metered_from = done
                if sealed:
                    sealing_from = await seal_seconds(http, ports)
            if progress:
                progress.update(done)
            if done >= total:
                break
            if time.monotonic() - last_change > stall_s:
                raise RuntimeError(f"no progress for {stall_s:.0f} s at {done:,}/{total:,}; "
                                   f"see {procs.log_dir}")
        if meter is not None:
            cpu = meter.stop()
            if sealing_from is not None:
                seal_cpu_s = await seal_seconds(http, ports) - sealing_from
    finally:
        procs.stop()
        await admin.close()
        await http.close()
    times = sorted(await stored_times(stores, tenants))
    if len(times) < total:
        say(f"  warning: {total - len(times):,} records were not stored (dead letters? see "
            f"{procs.log_dir})")
    result = DrainResult(label, workers, total, len(times), times[0] if times else 0.0,
                         times[-1] if times else 0.0, percentile(times, 10),
                         percentile(times, 90), startup, cpu, total - metered_from,
                         bool(prefix), str(procs.log_dir), sealed, in_flight,
                         levers=levers, seal_cpu_s=seal_cpu_s)
    say(f"  {result.stored:,} stored in {result.last - result.first:.1f} s: "
        f"{result.rate:,.0f} records/s")
    return result
