"""Relay download + acknowledgement through the gateway, against the same work done directly.

    python -m bench.gateway_relay [--n 20000] [--region eu] [--batch 500] [--rounds 1]
                                  [--sealing on,off] [--running-gateway]

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

--sealing on,off (the default) drains the records both ways once with their rows stored
sealed, as the pipeline stores them (services/stores/sealing.sealed_record_tuples under the
region's current KEK from the stack's keyring, mdmbus.crypto.keyring), so every download opens
each body (unwraps its data key, decrypts), and once with their bodies in clear (kek_id NULL:
a row stored before sealing, which every reader returns as it is); each round drains both,
the order alternating. The CPU a record of the gateway process (and of this process, whose
direct path opens the bodies itself) with and without sealing differs by what opening costs a
record plus the drains' noise on a shared machine; so the opening itself is also timed in this
process after the drains (services/stores/sealing.open_record on the same rows as the gateway
reads them, sealed against in clear, best of --open-rounds, process CPU time) and set against
the gateway's CPU a record on the sealed rows: the cost of opening, measured in the same run.

Prints records/s of each path and the ratio gateway / direct (the verdict on the sealed rows,
as mdmbus stores them). Target: at least 0.5.
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
from mdmbus.crypto.keyring import Kek, keyrings
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayClient
from mdmbus.tls import client_ssl_context
from mdmbus.services.rules import delete_after_download as relay
from mdmbus.services.simulators.records import RELAY_KINDS, RecordFactory
from mdmbus.services.stores.records import COLUMNS as STORE_COLUMNS, StoreRow
from mdmbus.services.stores.sealing import open_record, sealed_record_tuples
from mdmbus.settings import Settings
from mdmbus.stack import issuer
from bench.support import (check_stack, cpu_seconds, delete_tenants, launcher, listening,
                           onboard_tenants, open_stores, parser as make_parser, run_cli, say,
                           start_gateway, table)

__all__ = ["main"]

TARGET = 0.5
COLUMNS = ["record_id", "tenant_id", "kind", "category", "device_id", "session_id",
           "event_time", "stored_at", "body"]
#: The columns of sealed_rows' tuples: the store write's, then stored_at.
SEALED_COLUMNS = [*STORE_COLUMNS, "stored_at"]
#: --sealing's words: rows stored sealed (as the pipeline stores them) or with bodies in clear.
SEALING = {"on": True, "off": False}


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


def sealed_rows(rows: list[tuple], kek: Kek) -> list[tuple]:
    """relay_rows' rows (COLUMNS) as the pipeline stores them (SEALED_COLUMNS): each body
    sealed under a data key of its own, wrapped under ``kek``."""
    store = [StoreRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None, None, r[8]) for r in rows]
    return [(*t, r[7]) for t, r in zip(sealed_record_tuples(store, kek), rows)]


def open_cost(sealed: list[tuple], clear: list[tuple], rounds: int) -> tuple[float, float]:
    """CPU microseconds a record (best round, this process) of open_record on the rows as the
    gateway reads them: (sealed rows, the same rows in clear)."""
    def as_read(t: tuple, body: int, wrapped: int | None, kek_id: int | None) -> dict:
        return {"tenant_id": t[1], "record_id": t[0], "body": t[body],
                "wrapped_key": None if wrapped is None else t[wrapped],
                "kek_id": None if kek_id is None else t[kek_id]}
    body = SEALED_COLUMNS.index("body")
    on = [as_read(t, body, body + 1, body + 2) for t in sealed]
    off = [as_read(t, COLUMNS.index("body"), None, None) for t in clear]
    best = {"on": float("inf"), "off": float("inf")}
    for _ in range(rounds):
        for name, rows in (("on", on), ("off", off)):
            start = time.process_time()
            for row in rows:
                open_record(row)
            best[name] = min(best[name], time.process_time() - start)
    return 1e6 * best["on"] / len(on), 1e6 * best["off"] / len(off)


async def reset(pool: asyncpg.Pool, tenant: uuid.UUID, rows: list[tuple],
                columns: list[str] = COLUMNS) -> None:
    """The tenant holds exactly ``rows``, pending, and no audit rows."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM records WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM deletion_audit WHERE tenant_id = $1", tenant)
        await conn.copy_records_to_table("records", records=rows, columns=columns)
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
    words = [m.strip() for m in args.sealing.split(",") if m.strip()]
    if not words or any(m not in SEALING for m in words):
        raise SystemExit(f"--sealing {args.sealing!r}: each mode is 'on' or 'off'")
    modes = list(dict.fromkeys(SEALING[m] for m in words))
    await check_stack(settings, [region])
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    # The stack's keyring, as the pipeline (which seals) and the gateway (which opens) hold it.
    keyrings.configure(settings.keyring_path)
    stores = await open_stores(settings, [region], max_size=4)
    pool = stores.region(region)
    now = dt.datetime.now(dt.timezone.utc)
    tenants = await onboard_tenants(stores, 1, now, random.Random(seed), [region])
    tenant = uuid.UUID(tenants.ids[0])
    procs = None
    gateway_key = None
    client = None
    #: By (sealed, path): each drain's (records, seconds, round trips).
    results: dict[tuple[bool, str], list[tuple[int, float, list[float]]]] = {}
    #: By (sealed, path): CPU seconds spent while it drained (this process, the gateway's).
    cpu: dict[tuple[bool, str], list[tuple[float, float]]] = {}
    try:
        say(f"building {args.n:,} relay records of tenant {tenant} in {region}")
        rows = relay_rows(tenant, args.n, seed)
        stored = {False: (rows, COLUMNS)}
        if True in modes:
            kek = keyrings.get(region).current()
            say(f"sealing them as the pipeline stores them (KEK {kek.id})")
            stored[True] = (sealed_rows(rows, kek), SEALED_COLUMNS)
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
            for sealed in modes if round_ % 2 == 0 else modes[::-1]:
                bodies = "sealed" if sealed else "in clear"
                for path in ("gateway", "direct") if round_ % 2 == 0 else ("direct", "gateway"):
                    await reset(pool, tenant, *stored[sealed])
                    say(f"round {round_ + 1}: draining {args.n:,} records, bodies {bodies}, "
                        f"{path}")
                    gateway_pid = procs.procs[gateway_key].pid if procs else None
                    cpu0 = (time.process_time(), cpu_seconds(gateway_pid))
                    result = await (via_gateway(client, args.batch) if path == "gateway"
                                    else direct(pool, region, tenant, args.batch))
                    cpu.setdefault((sealed, path), []).append(
                        (time.process_time() - cpu0[0], cpu_seconds(gateway_pid) - cpu0[1]))
                    if result[0] != args.n:
                        raise SystemExit(f"{path}: drained {result[0]} records of {args.n}")
                    pending, _ = await relay.pending_summary(pool, tenant)
                    if pending:
                        raise SystemExit(f"{path}: {pending} records still pending")
                    results.setdefault((sealed, path), []).append(result)
                    if procs is not None:
                        procs.assert_alive()
    finally:
        if client is not None:
            await client.close()
        if procs is not None:
            procs.stop()
        await delete_tenants(stores, tenants)
        await stores.close()
    opened = None
    if True in modes and args.open_rounds > 0:
        say(f"timing open_record in this process on the {args.n:,} rows ({args.open_rounds} "
            "rounds) ...")
        opened = open_cost(stored[True][0], rows, args.open_rounds)

    print(f"{args.n:,} relay records of one tenant in {region}, batches of {args.batch}, "
          f"{args.rounds} round(s) each way")
    rates: dict[tuple[bool, str], float] = {}
    #: By (sealed, path): CPU microseconds a record (this process, the gateway's).
    per_record: dict[tuple[bool, str], tuple[float, float]] = {}
    out = []
    for sealed in modes:
        for path in ("gateway", "direct"):
            n = sum(r[0] for r in results[(sealed, path)])
            seconds = sum(r[1] for r in results[(sealed, path)])
            rounds = [x for r in results[(sealed, path)] for x in r[2]]
            rates[(sealed, path)] = n / seconds
            client_s = sum(c[0] for c in cpu[(sealed, path)])
            gateway_s = (sum(c[1] for c in cpu[(sealed, path)]) if path == "gateway"
                         else float("nan"))
            per_record[(sealed, path)] = (1e6 * client_s / n, 1e6 * gateway_s / n)
            out.append((f"{path}, bodies {'sealed' if sealed else 'in clear'}", n, seconds,
                        rates[(sealed, path)], 1000 * statistics.median(rounds),
                        1000 * max(rounds), client_s, 1e6 * client_s / n, gateway_s,
                        1e6 * gateway_s / n))
    table(["path", "records", "seconds", "records/s", "batch p50 ms", "batch max ms",
           "client CPU s", "client us/rec", "gateway CPU s", "gateway us/rec"], out,
          title="download + acknowledge")
    print("(client: this process, the GatewayClient or the asyncpg pool; gateway: its process, "
          "when this benchmark started it; PostgreSQL's CPU is in neither)")
    if len(modes) == 2:
        gw_on, gw_off = per_record[(True, "gateway")][1], per_record[(False, "gateway")][1]
        dr_on, dr_off = per_record[(True, "direct")][0], per_record[(False, "direct")][0]
        table(["CPU us a record", "bodies sealed", "in clear", "opening (difference)",
               "of the sealed figure"],
              [("gateway process (gateway path)", gw_on, gw_off, gw_on - gw_off,
                f"{100 * (gw_on - gw_off) / gw_on:.1f}%"),
               ("this process (direct path: it opens the bodies)", dr_on, dr_off,
                dr_on - dr_off, f"{100 * (dr_on - dr_off) / dr_on:.1f}%"),
               ("records/s gateway path", rates[(True, "gateway")],
                rates[(False, "gateway")],
                rates[(True, "gateway")] - rates[(False, "gateway")],
                f"sealed / in clear "
                f"{rates[(True, 'gateway')] / rates[(False, 'gateway')]:.3f}")],
              title="What opening every body costs, same run (sealed: as the pipeline stores "
                    "them; in clear: kek_id NULL, as a row stored before sealing)")
    if opened is not None:
        gw_on = per_record[(True, "gateway")][1]
        share = (opened[0] - opened[1]) / gw_on
        table(["opening, timed in this process", "us/record"],
              [("open_record, sealed rows", opened[0]),
               ("open_record, the same rows in clear", opened[1]),
               ("opening (the difference)", opened[0] - opened[1]),
               ("the gateway's CPU a record, sealed rows (above)", gw_on),
               ("opening / the gateway's CPU a record", f"{100 * share:.1f}%")],
              title=f"What opening costs the gateway a record, measured in this run (best of "
                    f"{args.open_rounds} rounds, this process's CPU time, the stack's keyring)")
    for sealed in modes:
        ratio = rates[(sealed, "gateway")] / rates[(sealed, "direct")]
        verdict = "meets" if ratio >= TARGET else "BELOW"
        which = "sealed (as mdmbus stores them)" if sealed else "in clear (bench only)"
        print(f"ratio gateway / direct, bodies {which}: {ratio:.3f} ({verdict} the target of "
              f"{TARGET})")


def main() -> None:
    parser = make_parser("bench.gateway_relay", __doc__)
    parser.add_argument("--n", type=int, default=20_000, help="relay records to drain")
    parser.add_argument("--region", choices=REGIONS, default="eu")
    parser.add_argument("--batch", type=int, default=500,
                        help="records per download (GatewayClient.download limit)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="times each path drains the records (alternating which goes first)")
    parser.add_argument("--sealing", default="on,off",
                        help="drain the records stored sealed (on, as the pipeline stores "
                             "them) and/or with bodies in clear (off, kek_id NULL), in this "
                             "order (default on,off)")
    parser.add_argument("--open-rounds", type=int, default=5, metavar="R",
                        help="after the drains, time open_record on the sealed rows in this "
                             "process, best of R rounds (0: skip)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--running-gateway", action="store_true",
                        help="use the gateway already listening on the region's port")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
