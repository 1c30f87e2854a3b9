"""Deletion cost against store size: time per deleted row when the same number of rows is
deleted out of stores of 10^4, 10^5 and 10^6 rows, by the sweeper's two deletes.

    python -m bench.purge_scaling [--sizes 10000,100000,1000000] [--expiring 5000]
                                  [--layouts ordered,shuffled] [--operations sweep,purge]
                                  [--rounds 3]

A scratch database (mdmbus_bench_purge, on the server of the first region's store) gets the
region schema (services/stores/region_schema.sql, the file services.stores.schema names for a
region database). For each operation, size and layout the tables are emptied and ``records``
is filled by COPY with SIZE command rows (about 180-byte bodies, every one with a deadline in
the future), of which --expiring are the rows to delete; then vacuumed, analysed and
checkpointed (a store in steady state), and the deletion is timed:

- ``sweep``: the --expiring rows have a deadline in the past, and
  services.stores.expiry.sweep_deadlines runs in a loop as the sweeper does
  (MDMBUS_SWEEP_BATCH rows a statement, until a statement deletes fewer): session expiry,
  and every other deadline, retention purges' rows included;
- ``purge``: the --expiring rows belong to one tenant, and services.rules.retention.purge_tenant
  deletes them (in MDMBUS_SWEEP_BATCH batches, through the tenant index), as a retention purge
  or a deletion request does.

Layouts: ``ordered`` writes the rows to delete together (commands arrive roughly in the order
they expire; a tenant's rows arrive over its life, so this is the kind case for a purge);
``shuffled`` writes them in random order (each on its own page: the worst case for the heap).

Prints microseconds per deleted row for each size (the best of --rounds) and the max/min
ratio per operation and layout. Target: within 1.5x (the cost follows the rows deleted, not
the size of the store). The scratch database is dropped at the end (--keep leaves it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
import uuid
from importlib.resources import files

import asyncpg

from mdmbus.regions import REGIONS, region_database
from mdmbus.services.rules.audit import RETENTION_PURGE
from mdmbus.services.rules.retention import purge_tenant
from mdmbus.services.stores.expiry import sweep_deadlines
from mdmbus.services.stores.schema import schema_file
from mdmbus.settings import Settings
from bench.support import check_stack, parser as make_parser, pg_connect, run_cli, say, table

__all__ = ["main"]

SCRATCH_DB = "mdmbus_bench_purge"
REGION = REGIONS[0]
COLUMNS = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
           "event_time", "stored_at", "deadline", "deadline_rule", "body")


async def _scratch(settings: Settings) -> asyncpg.Connection:
    """The scratch database with the region schema. services.stores.schema.ensure_schema
    applies a schema only to an mdmbus database (it names the file by the database), so the
    region file it names is applied here directly."""
    host_db = region_database(REGION)
    admin = await pg_connect(settings, host_db)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", SCRATCH_DB):
            await admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
    finally:
        await admin.close()
    host, port = settings.pg_server(host_db)
    conn = await pg_connect(settings, host_db, connect_to=SCRATCH_DB)
    sql = files("mdmbus.services.stores").joinpath(schema_file(host_db)).read_text("utf-8")
    await conn.execute(sql)
    say(f"scratch database {SCRATCH_DB} on {host}:{port}")
    return conn


async def _drop(settings: Settings) -> None:
    admin = await pg_connect(settings, region_database(REGION))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
    finally:
        await admin.close()


def _rows(size: int, doomed: int, layout: str, operation: str, now: dt.datetime,
          rng: random.Random) -> tuple[list[tuple], uuid.UUID]:
    """``size`` command rows; the first ``doomed`` are the ones to delete: past their deadline
    (sweep), or of one tenant (purge). Returns the rows and that tenant."""
    tenants = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(100)]
    target = uuid.UUID(int=rng.getrandbits(128), version=4)
    body = rng.randbytes(180)
    rows = []
    for i in range(size):
        tenant = rng.choice(tenants)
        if i < doomed and operation == "sweep":   # expired: up to an hour ago, oldest first
            deadline = now - dt.timedelta(seconds=3600 * (1 - i / doomed) + 1)
        else:                                     # due in the next day, in order
            deadline = now + dt.timedelta(seconds=60 + 86_400 * i / size)
            if i < doomed:
                tenant = target
        rows.append((uuid.UUID(int=rng.getrandbits(128), version=4), tenant, "device_command",
                     "command", uuid.UUID(int=rng.getrandbits(128), version=4),
                     uuid.UUID(int=rng.getrandbits(128), version=4), now, now, deadline,
                     "session_expiry", body))
    if layout == "shuffled":
        rng.shuffle(rows)
    return rows, target


async def _fill(conn: asyncpg.Connection, rows: list[tuple], tenant: uuid.UUID,
                now: dt.datetime) -> None:
    await conn.execute("TRUNCATE records, deletion_audit, tenants, purged_tenants")
    await conn.execute("INSERT INTO tenants (tenant_id, country, region, state, onboarded_at,"
                       " purge_at) VALUES ($1, 'DE', $2, 'retention', $3, $3)",
                       tenant, REGION, now)
    for i in range(0, len(rows), 100_000):
        await conn.copy_records_to_table("records", records=rows[i:i + 100_000], columns=COLUMNS)
    await conn.execute("VACUUM ANALYZE records")
    await conn.execute("CHECKPOINT")  # the COPY's dirty pages are written out before timing


async def _sweep(conn: asyncpg.Connection, now: dt.datetime, batch: int,
                 tenant: uuid.UUID) -> tuple[int, float, int]:
    """(rows deleted, seconds, statements) of a sweeper-style loop."""
    deleted = statements = 0
    began = time.perf_counter()
    while True:
        got = await sweep_deadlines(conn, REGION, now, batch, lambda deadline: 0.0)
        statements += 1
        n = sum(d.count for d in got)
        deleted += n
        if n < batch:
            break
    return deleted, time.perf_counter() - began, statements


async def _purge(conn: asyncpg.Connection, now: dt.datetime, batch: int,
                 tenant: uuid.UUID) -> tuple[int, float, int]:
    """(rows deleted, seconds, delete statements) of one tenant's purge (its records; the
    tenant row is not counted)."""
    began = time.perf_counter()
    got = await purge_tenant(conn, REGION, tenant, now, RETENTION_PURGE, batch, lag=0.0)
    seconds = time.perf_counter() - began
    mine = [d for d in got if d.category == "command"]
    return sum(d.count for d in mine), seconds, len(mine)


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings, [REGION])
    sizes = [int(s) for s in args.sizes.split(",")]
    layouts = args.layouts.split(",")
    operations = args.operations.split(",")
    unknown = set(operations) - {"sweep", "purge"}
    if unknown:
        raise SystemExit(f"unknown operations {sorted(unknown)}; known: sweep, purge")
    if args.expiring > min(sizes):
        raise SystemExit("--expiring must not exceed the smallest size")
    print(f"settings: MDMBUS_SWEEP_BATCH={settings.sweep_batch}, {args.expiring:,} rows "
          f"deleted out of {', '.join(f'{s:,}' for s in sizes)}, operations "
          f"{', '.join(operations)}, layouts {', '.join(layouts)}, best of {args.rounds}")
    conn = await _scratch(settings)
    rng = random.Random(args.seed)
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        for operation in operations:
            delete = _sweep if operation == "sweep" else _purge
            for layout in layouts:
                for size in sizes:
                    # the same rows every round; deadlines are relative to ``now``, which the
                    # deletion is given, so the wall clock does not matter
                    now = dt.datetime.now(dt.timezone.utc)
                    rows, tenant = _rows(size, args.expiring, layout, operation, now, rng)
                    for r in range(args.rounds):
                        began = time.perf_counter()
                        await _fill(conn, rows, tenant, now)
                        filled = time.perf_counter() - began
                        deleted, seconds, statements = await delete(
                            conn, now, settings.sweep_batch, tenant)
                        if deleted != args.expiring:
                            raise RuntimeError(f"{operation} deleted {deleted:,} rows, "
                                               f"expected {args.expiring:,}")
                        left = await conn.fetchval("SELECT count(*) FROM records")
                        if left != size - args.expiring:
                            raise RuntimeError(f"{left:,} rows left, expected "
                                               f"{size - args.expiring:,}")
                        us = 1e6 * seconds / deleted
                        results.setdefault((operation, layout, size), []).append(us)
                        say(f"  {operation} {layout} {size:,} rows, round {r + 1}: filled in "
                            f"{filled:.1f} s, {deleted:,} deleted in {seconds * 1000:.0f} ms "
                            f"({statements} statements): {us:.2f} us/row")
    finally:
        await conn.close()
        if not args.keep:
            await _drop(settings)
    rows_out = []
    for operation in operations:
        for layout in layouts:
            best = {size: min(results[(operation, layout, size)]) for size in sizes}
            ratio = max(best.values()) / min(best.values())
            for size in sizes:
                rows_out.append((f"{operation} {layout}", size, best[size],
                                 max(results[(operation, layout, size)]), 1e6 / best[size]))
            rows_out.append((f"{operation} {layout}: max/min", "", ratio, "",
                             "met" if ratio <= 1.5 else "NOT met"))
    table(["operation, layout", "store rows", "us/deleted row (best)", "worst round",
           "rows/s"], rows_out,
          title=f"{args.expiring:,} rows deleted out of stores of each size: sweep = "
                "sweep_deadlines, purge = purge_tenant (target: max/min within 1.5x)")


def main() -> None:
    parser = make_parser("bench.purge_scaling", __doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--expiring", type=int, default=5000,
                        help="rows deleted out of each store")
    parser.add_argument("--layouts", default="ordered,shuffled")
    parser.add_argument("--operations", default="sweep,purge")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="leave the scratch database")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
