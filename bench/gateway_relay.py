"""Relay download + acknowledgement through the gateway, against the same work done directly.

    python -m bench.gateway_relay [--n 20000] [--region eu] [--batch 500] [--rounds 1]
                                  [--running-gateway]

A fresh tenant is registered in the tenant directory and in its region store (as onboarding
leaves it: bench.support.onboard_tenants); --n relay records (R1..R6 from RecordFactory, single-object encoded with the
contract's codec) are written straight into the region store, as the pipeline stores them.
They are then drained twice, the same rows each time (re-inserted, same ids and bodies, between
the two):

- gateway: as CM's connector does, over HTTPS with a connector token: GatewayClient.download
  (limit --batch), then GatewayClient.ack of the ids downloaded, until nothing is pending;
- direct: the same queries on an asyncpg pool to the region store, no HTTP:
  services.rules.delete_after_download.pending(pool, tenant, --batch), then acknowledge() on a
  connection of the pool, until nothing is pending.

The gateway is a real process (`mdmbus process gateway --region R`), started by this benchmark
through the one launcher (mdmbus.cli.launcher.Launcher, bench.support.launcher) on the configured
port (MDMBUS_GATEWAY_PORT_<REGION>);
with --running-gateway, the one already listening there is used. Everything the run wrote (the
tenant's rows, its audit rows, its tenant and directory rows) is deleted at the end.
The CM side is not in this benchmark (bench.deletion_lag measures the connector's lags).

Prints records/s of each path and the ratio gateway / direct. Target: at least 0.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
import uuid
from typing import Awaitable, Callable

import asyncpg

from mdmbus.categories import Category
from mdmbus.clock import Clock
from mdmbus.contract import default_registry
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayClient
from mdmbus.tls import client_ssl_context
from mdmbus.services.rules import delete_after_download as relay
from mdmbus.services.simulators.records import RELAY_KINDS, RecordFactory
from mdmbus.settings import Settings
from mdmbus.stack import issuer
from bench.support import (check_stack, cpu_seconds, delete_tenants, launcher, listening,
                           onboard_tenants, open_stores, parser as make_parser, run_cli, say,
                           start_gateway, table)

__all__ = ["main"]

TARGET = 0.5
COLUMNS = ["record_id", "tenant_id", "kind", "category", "device_id", "session_id",
           "event_time", "stored_at", "body"]


def relay_rows(tenant: uuid.UUID, n: int, seed: int) -> list[tuple]:
    """n valid relay records of the tenant, as the pipeline stores them."""
    contract = default_registry()
    factory = RecordFactory(seed, contract)
    now = dt.datetime.now(dt.timezone.utc)
    base_ms = int(now.timestamp() * 1000) - n
    rows = []
    for i in range(n):
        kind = RELAY_KINDS[i % len(RELAY_KINDS)]
        record = factory.make(kind, str(tenant), base_ms + i)
        env = record["envelope"]
        rows.append((uuid.UUID(env["record_id"]), tenant, kind, Category.RELAY.value,
                     uuid.UUID(env["device_id"]) if env["device_id"] else None, None,
                     dt.datetime.fromtimestamp((base_ms + i) / 1000, dt.timezone.utc), now,
                     contract.codec.encode(kind, record)))
    return rows


async def reset(pool: asyncpg.Pool, tenant: uuid.UUID, rows: list[tuple]) -> None:
    """The tenant holds exactly ``rows``, pending, and no audit rows."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM records WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM deletion_audit WHERE tenant_id = $1", tenant)
        await conn.copy_records_to_table("records", records=rows, columns=COLUMNS)
    await pool.execute("ANALYZE records")


async def drain(fetch: Callable[[], Awaitable[list[str]]],
                ack: Callable[[list[str]], Awaitable[int]]) -> tuple[int, float, list[float]]:
    """Download a batch, acknowledge it, until nothing is pending: (records, seconds, the
    seconds of each round trip pair)."""
    done, rounds = 0, []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ids = await fetch()
        if not ids:
            break
        deleted = await ack(ids)
        if deleted != len(ids):
            raise SystemExit(f"an acknowledgement of {len(ids)} ids deleted {deleted}")
        done += deleted
        rounds.append(time.perf_counter() - t0)
    return done, time.perf_counter() - started, rounds


async def via_gateway(client: GatewayClient, batch: int) -> tuple[int, float, list[float]]:
    async def fetch() -> list[str]:
        return [r["record_id"] for r in await client.download(limit=batch)]

    async def ack(ids: list[str]) -> int:
        return len((await client.ack(ids))["deleted"])
    return await drain(fetch, ack)


async def direct(pool: asyncpg.Pool, region: str, tenant: uuid.UUID,
                 batch: int) -> tuple[int, float, list[float]]:
    clock = Clock(1.0, time.time())

    async def fetch() -> list[str]:
        return [r["record_id"] for r in await relay.pending(pool, tenant, batch)]

    async def ack(ids: list) -> int:
        async with pool.acquire() as conn:
            outcome = await relay.acknowledge(conn, region, tenant, ids, clock.now_dt())
        return len(outcome.deleted)
    return await drain(fetch, ack)


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    region = args.region
    await check_stack(settings, [region])
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    stores = await open_stores(settings, [region], max_size=4)
    pool = stores.region(region)
    now = dt.datetime.now(dt.timezone.utc)
    tenants = await onboard_tenants(stores, 1, now, random.Random(seed), [region])
    tenant = uuid.UUID(tenants.ids[0])
    procs = None
    gateway_key = None
    client = None
    results: dict[str, list[tuple[int, float, list[float]]]] = {"gateway": [], "direct": []}
    #: CPU seconds spent while each path drained: (this process, the gateway process).
    cpu: dict[str, list[tuple[float, float]]] = {"gateway": [], "direct": []}
    try:
        say(f"building {args.n:,} relay records of tenant {tenant} in {region}")
        rows = relay_rows(tenant, args.n, seed)
        if not args.running_gateway:
            procs = launcher(settings, "gateway-relay")
            gateway_key = await start_gateway(procs, settings, region)
            say(f"gateway of {region} started (pid {procs.procs[gateway_key].pid}), logs in "
                f"{procs.log_dir}")
        elif not listening(settings.gateway_ports[region]):
            raise SystemExit(f"--running-gateway: nothing listens on "
                             f"{settings.gateway_ports[region]}")
        client = GatewayClient(settings.gateway_url(region),
                               issuer(settings).issue(str(tenant), "connector", 4 * 3600),
                               client_ssl_context(settings.ca_path))
        await client.status()  # the gateway answers for this tenant before the clock starts
        for round_ in range(args.rounds):
            for path in ("gateway", "direct") if round_ % 2 == 0 else ("direct", "gateway"):
                await reset(pool, tenant, rows)
                say(f"round {round_ + 1}: draining {args.n:,} records, {path}")
                gateway_pid = procs.procs[gateway_key].pid if procs else None
                cpu0 = (time.process_time(), cpu_seconds(gateway_pid))
                result = await (via_gateway(client, args.batch) if path == "gateway"
                                else direct(pool, region, tenant, args.batch))
                cpu[path].append((time.process_time() - cpu0[0],
                                  cpu_seconds(gateway_pid) - cpu0[1]))
                if result[0] != args.n:
                    raise SystemExit(f"{path}: drained {result[0]} records of {args.n}")
                pending, _ = await relay.pending_summary(pool, tenant)
                if pending:
                    raise SystemExit(f"{path}: {pending} records still pending")
                results[path].append(result)
                if procs is not None:
                    procs.assert_alive()
    finally:
        if client is not None:
            await client.close()
        if procs is not None:
            procs.stop()
        await delete_tenants(stores, tenants)
        await stores.close()

    print(f"{args.n:,} relay records of one tenant in {region}, batches of {args.batch}, "
          f"{args.rounds} round(s)")
    rates = {}
    out = []
    for path in ("gateway", "direct"):
        n = sum(r[0] for r in results[path])
        seconds = sum(r[1] for r in results[path])
        rounds = [x for r in results[path] for x in r[2]]
        rates[path] = n / seconds
        out.append((path, n, seconds, rates[path], 1000 * statistics.median(rounds),
                    1000 * max(rounds), sum(c[0] for c in cpu[path]),
                    sum(c[1] for c in cpu[path]) if path == "gateway" else float("nan")))
    table(["path", "records", "seconds", "records/s", "batch p50 ms", "batch max ms",
           "client CPU s", "gateway CPU s"], out, title="download + acknowledge")
    print("(client: this process, the GatewayClient or the asyncpg pool; gateway: its process, "
          "when this benchmark started it; PostgreSQL's CPU is in neither)")
    ratio = rates["gateway"] / rates["direct"]
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"\nratio gateway / direct: {ratio:.3f} ({verdict} the target of {TARGET})")


def main() -> None:
    parser = make_parser("bench.gateway_relay", __doc__)
    parser.add_argument("--n", type=int, default=20_000, help="relay records to drain")
    parser.add_argument("--region", choices=REGIONS, default="eu")
    parser.add_argument("--batch", type=int, default=500,
                        help="records per download (GatewayClient.download limit)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times each path drains the records (alternating which goes first)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--running-gateway", action="store_true",
                        help="use the gateway already listening on the region's port")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
