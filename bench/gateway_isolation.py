"""One tenant attacks its region's gateway; another tenant of the region is the victim.

    python -m bench.gateway_isolation [--region eu] [--rows 20000] [--slow 1000]
                                      [--seconds 30] [--after-seconds 75]
                                      [--attacker-address 127.0.0.2] [--attacker-nice 19]
                                      [--running-gateway]

Two tenants are onboarded straight into the stores (bench.support.onboard_tenants); the
attacker holds --rows upload records (an export of megabytes), the victim a few relay records
that are put back after each download. The gateway is a real process started by this benchmark
(or the one already listening, with --running-gateway).

Three phases in one run: before (victim alone) and attack of --seconds each, after of
--after-seconds (by default longer than the gateway's once-a-minute heap trim, so that memory
after is measured once the process had its chance to give back what the attack made it
allocate). During the attack the attacker keeps its exports open and unread (as many as it
may start, re-opened as they are cut) and --slow other connections complete TLS and send
nothing (slowloris), each re-opened as it is cut (half a second after a refusal). The
attacker is a process of its own whose every connection comes from --attacker-address
(loopback has a whole /8), the victim's from 127.0.0.1: two clients, as on a network. All the time the victim calls,
in a loop: status, a relay download of 10, an upload of one record. The victim's CM connector
role (download) is part of the loop: it must keep draining.

An attacker on the network spends its own machine's CPU; here it shares the gateway's two
cores, and whenever it runs in the gateway's place the victim waits for a reason that has
nothing to do with the gateway's isolation. So the attacker runs at nice --attacker-nice
(default 19): it takes every cycle the stack leaves idle, which is all its attack needs (the
report prints what it opened and was refused, and the cores it used), but the scheduler runs
the gateway first when both are ready. --attacker-nice 0 measures the same attack competing
for the cores as an equal.

Prints the victim's p50 / p99 / max latency per phase, the attack's p99 over the one before
(target <= 2x), failures and 429/503 answers, what the attacker got (connections opened and
refused), and the gateway's resident memory at the start and end of each phase (target:
after within 20 % of before, the end of each phase: a warmed-up process against itself).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import random
import ssl
import time
import uuid

from mdmbus.categories import Category
from mdmbus.contract import default_registry, to_json
from mdmbus.crypto.keyring import keyrings
from mdmbus.heap import TRIM_INTERVAL_S
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayClient, GatewayError
from mdmbus.tls import client_ssl_context
from mdmbus.services.simulators.records import RecordFactory
from mdmbus.services.stores.records import COLUMNS as STORE_COLUMNS, StoreRow
from mdmbus.services.stores.sealing import sealed_record_tuples
from mdmbus.settings import Settings
from mdmbus.stack import issuer
from bench.support import (CpuMeter, check_stack, delete_tenants, launcher, listening,
                           onboard_tenants, open_stores, parser as make_parser, percentile,
                           rss_mb, run_cli, say, start_gateway, table)

__all__ = ["main"]

P99_TARGET = 2.0
MEMORY_TARGET = 0.20
COLUMNS = [*STORE_COLUMNS, "stored_at"]


def _rows(tenant: uuid.UUID, kind: str, category: str, n: int, seed: int,
          region: str) -> list[tuple]:
    """n records of the tenant as the pipeline stores them: each body sealed under a data key
    of its own, wrapped by the region's current KEK (so an export opens every body, as in
    production)."""
    contract = default_registry()
    factory = RecordFactory(seed, contract)
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for _ in range(n):
        record = factory.make(kind, str(tenant), int(now.timestamp() * 1000),
                              device_id=str(uuid.uuid4()) if category == "relay" else None)
        rows.append(StoreRow(uuid.UUID(record["envelope"]["record_id"]), tenant, kind, category,
                             None, None, now, None, None, contract.codec.encode(kind, record)))
    return [(*t, now) for t in sealed_record_tuples(rows, keyrings.get(region).current())]


class Victim:
    """The victim's loop: status, relay download, upload; every call's latency and outcome."""

    def __init__(self, client: GatewayClient, tenant: uuid.UUID, seed: int) -> None:
        self.client, self.tenant = client, tenant
        self.factory = RecordFactory(seed)
        self.contract = default_registry()
        #: (when, seconds, outcome, call)
        self.samples: list[tuple[float, float, str, str]] = []

    async def one(self, name: str, call) -> None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(call(), 30)
            outcome = "ok"
        except GatewayError as exc:
            outcome = str(exc.status)
        except (asyncio.TimeoutError, OSError) as exc:
            outcome = type(exc).__name__
        self.samples.append((started, time.monotonic() - started, outcome, name))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            record = self.factory.make("U12", str(self.tenant), int(time.time() * 1000))
            line = {"kind": "U12", "record": to_json(self.contract.spec("U12").expanded, record)}
            await self.one("status", self.client.status)
            await self.one("relay download", lambda: self.client.download(limit=10))
            await self.one("upload", lambda line=line: self.client.upload([line]))


async def _unread_export(ctx: ssl.SSLContext, port: int, token: str, source: str):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   local_addr=(source, 0))
    writer.write(f"GET /v1/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
                 .encode())
    await writer.drain()
    return writer


async def attack(ctx: ssl.SSLContext, port: int, token: str, slow: int, source: str,
                 stop: asyncio.Event, exports: int = 4) -> dict[str, int]:
    """Unread exports (``exports`` more every second) and ``slow`` silent connections
    (re-opened as they are cut), from ``source``, until ``stop``."""
    counts = {"exports opened": 0, "slow opened": 0, "refused": 0}
    open_writers: list[asyncio.StreamWriter] = []

    async def silent() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                               local_addr=(source, 0))
            except (OSError, ssl.SSLError):
                counts["refused"] += 1
                await asyncio.sleep(0.5)
                continue
            counts["slow opened"] += 1
            try:
                read = asyncio.ensure_future(reader.read())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
                read.cancel()
                stopped.cancel()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()

    tasks = [asyncio.create_task(silent()) for _ in range(slow)]
    try:
        while not stop.is_set():
            for _ in range(exports):
                try:
                    open_writers.append(await _unread_export(ctx, port, token, source))
                    counts["exports opened"] += 1
                except (OSError, ssl.SSLError):
                    counts["refused"] += 1
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        for writer in open_writers:
            writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def _attacker(ca: str, port: int, token: str, slow: int, source: str, seconds: float,
              exports: int, nice: int) -> None:
    """The attack in a process of its own: its thousand connections must not slow the victim's
    client loop, only the gateway (and, at ``nice`` > 0, take the cores only when the stack
    leaves them idle, as a remote attacker's CPU would)."""
    os.nice(nice)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        counts = await attack(client_ssl_context(ca), port, token, slow, source, stop, exports)
        print(f"attack (the attacker at nice {nice}): {counts}", flush=True)
    asyncio.run(main())


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    region = args.region
    await check_stack(settings, [region])
    seed = random.SystemRandom().getrandbits(32)
    stores = await open_stores(settings, [region], max_size=2)
    now = dt.datetime.now(dt.timezone.utc)
    tenants = await onboard_tenants(stores, 2, now, random.Random(seed), [region])
    attacker, victim_id = (uuid.UUID(t) for t in tenants.ids)
    procs = key = None
    ctx = client_ssl_context(settings.ca_path)
    port = settings.gateway_ports[region]
    client = None
    phases: dict[str, tuple[float, float]] = {}
    memory: dict[str, float | None] = {}
    #: Per phase: cores busy on average (gateway, attacker, this process, rest, machine).
    cpu: dict[str, dict[str, float]] = {}
    try:
        pool = stores.region(region)
        await pool.copy_records_to_table("records", records=_rows(
            attacker, "U12", Category.UPLOAD.value, args.rows, seed, region), columns=COLUMNS)
        relay = _rows(victim_id, "R1", Category.RELAY.value, 50, seed + 1, region)
        await pool.copy_records_to_table("records", records=relay, columns=COLUMNS)
        if not args.running_gateway:
            procs = launcher(settings, "gateway-isolation")
            key = await start_gateway(procs, settings, region)
        elif not listening(port):
            raise SystemExit(f"--running-gateway: nothing listens on {port}")
        pid = procs.procs[key].pid if procs else None
        client = GatewayClient(settings.gateway_url(region),
                               issuer(settings).issue(str(victim_id), "connector", 3600), ctx)
        victim = Victim(client, victim_id, seed)
        token = issuer(settings).issue(str(attacker), "auditor", 3600)
        await client.status()

        for phase in ("before", "attack", "after"):
            seconds = args.after_seconds if phase == "after" else args.seconds
            say(f"{phase}: {seconds} s")
            if pid:
                memory[f"{phase} (start)"] = rss_mb(pid)
            stop = asyncio.Event()
            attacker = None
            if phase == "attack":
                attacker = multiprocessing.get_context("spawn").Process(
                    target=_attacker, args=(str(settings.ca_path), port, token, args.slow,
                                            args.attacker_address, args.seconds,
                                            args.exports, args.attacker_nice))
                attacker.start()
            groups = {"gateway": [pid] if pid else [], "benchmark (victim client)": [os.getpid()],
                      "attacker": [attacker.pid] if attacker is not None else []}
            meter = CpuMeter(groups)
            started = time.monotonic()
            jobs = [asyncio.create_task(victim.run(stop))]
            await asyncio.sleep(seconds)
            if pid:
                memory[f"{phase} (end)"] = rss_mb(pid)
            cpu[phase] = {what: cores for what, _, cores in meter.stop()}
            stop.set()
            await asyncio.gather(*jobs)
            if attacker is not None:
                await asyncio.get_running_loop().run_in_executor(None, attacker.join, 60)
            phases[phase] = (started, time.monotonic())
    finally:
        if client is not None:
            await client.close()
        if procs is not None:
            procs.stop()
        await delete_tenants(stores, tenants)
        await stores.close()

    rows, p99 = [], {}
    for phase, (t0, t1) in phases.items():
        s = [(d, o) for (w, d, o, _) in victim.samples if t0 <= w < t1]
        ms = [1000 * d for d, _ in s]
        bad = sum(1 for _, o in s if o != "ok")
        p99[phase] = percentile(ms, 99)
        rows.append((phase, len(s), percentile(ms, 50), p99[phase], max(ms), bad,
                     ", ".join(sorted({o for _, o in s if o != "ok"})) or "-"))
    table(["phase", "victim calls", "p50 ms", "p99 ms", "max ms", "not ok", "answers"], rows,
          title=f"victim tenant in {region} (status, relay download, upload in a loop)")
    by_call = []
    for name in ("status", "relay download", "upload"):
        for phase, (t0, t1) in phases.items():
            ms = [1000 * d for (w, d, _, n) in victim.samples if n == name and t0 <= w < t1]
            by_call.append((name, phase, len(ms), percentile(ms, 50), percentile(ms, 99)))
    table(["call", "phase", "calls", "p50 ms", "p99 ms"], by_call,
          title="the same by call")
    ratio = p99["attack"] / p99["before"]
    print(f"victim p99 under attack / before: {ratio:.2f} "
          f"({'meets' if ratio <= P99_TARGET else 'ABOVE'} the target of {P99_TARGET}x)")
    if cpu:
        whats = list(next(iter(cpu.values())))
        table(["phase", *whats], [(phase, *(f"{c[w]:.2f}" for w in whats))
                                  for phase, c in cpu.items()],
              title="cores busy on average (the machine has "
                    f"{os.cpu_count()}; 'rest': other jobs on it)")
    if memory:
        table(["when", "gateway RSS MB"], [(k, v) for k, v in memory.items()],
              title="gateway memory")
        cold, before, after = (memory.get(k) for k in ("before (start)", "before (end)",
                                                       "after (end)"))
        if before and after:
            growth = after / before - 1
            print(f"gateway memory after / before (ends of the phases): {after / before:.2f} "
                  f"({'meets' if growth <= MEMORY_TARGET else 'ABOVE'} the target of "
                  f"+{MEMORY_TARGET:.0%})")
        if cold and after:
            print(f"gateway memory after / at its start, before any traffic: {after / cold:.2f}")


def main() -> None:
    parser = make_parser("bench.gateway_isolation", __doc__)
    parser.add_argument("--region", choices=REGIONS, default="eu")
    parser.add_argument("--rows", type=int, default=20_000, help="the attacker's records")
    parser.add_argument("--slow", type=int, default=1000, help="silent connections at once")
    parser.add_argument("--exports", type=int, default=4,
                        help="unread exports the attacker opens a second (0: none)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="length of the before and attack phases")
    parser.add_argument("--after-seconds", type=float, default=TRIM_INTERVAL_S + 15,
                        help="length of the after phase (default: past the gateway's next "
                        "heap trim)")
    parser.add_argument("--attacker-address", default="127.0.0.2",
                        help="the source address of every attacker connection (the victim "
                        "connects from 127.0.0.1)")
    parser.add_argument("--attacker-nice", type=int, default=19, choices=range(0, 20),
                        metavar="0-19", help="the attacker process's nice value (19: it runs "
                        "on the cores the stack leaves idle, as a remote attacker's CPU is not "
                        "the gateway's; 0: it competes with the stack as an equal)")
    parser.add_argument("--running-gateway", action="store_true",
                        help="use the gateway already listening on the region's port")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
