"""Purge cost against store size: time per deleted row when the same number of rows expires out
of stores of 10^4, 10^5 and 10^6 rows.

    python -m bench.purge_scaling [--sizes 10000,100000,1000000] [--expiring 5000]
                                  [--layouts ordered,shuffled] [--rounds 3]

A scratch database (mdmbus_bench_purge, on the server of the NA store) gets the region schema
(services/stores/region_schema.sql). For each size and layout the records table is emptied,
filled by COPY with SIZE command rows (about 180-byte bodies, every one with a deadline), of
which --expiring have a deadline in the past and the others one in the future, then vacuumed
and analysed (a store in steady state). Then services.rules.session_expiry.sweep_expired runs
in a loop, as the sweeper does (MDMBUS_SWEEP_BATCH rows a statement, until a statement deletes
fewer), and is timed. Layouts: ``ordered`` writes the rows in deadline order (commands arrive
roughly in the order they expire, so the expired ones share pages); ``shuffled`` writes them in
random order (each expired row on its own page: the worst case for the heap).

Prints microseconds per deleted row for each size (the best of --rounds) and the max/min ratio
per layout. Target: within 1.5x (the cost follows the rows deleted, not the size of the store).
The scratch database is dropped at the end (--keep leaves it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
import uuid

import asyncpg

from mdmbus.regions import region_database
from mdmbus.settings import Settings
from bench.support import check_stack, machine, say, table, run_cli
from mdmbus.services.rules.session_expiry import sweep_expired
from mdmbus.services.stores.schema import ensure_region_schema

__all__ = ["main"]

SCRATCH_DB = "mdmbus_bench_purge"
COLUMNS = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
           "event_time", "stored_at", "deadline", "deadline_rule", "body")


async def _scratch(settings: Settings) -> asyncpg.Connection:
    host_db = region_database("na")
    admin = await asyncpg.connect(settings.pg_dsn(host_db))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", SCRATCH_DB):
            await admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
    finally:
        await admin.close()
    host, port = settings.pg_server(host_db)
    dsn = settings.pg_dsn(host_db, connect_to=SCRATCH_DB)
    conn = await asyncpg.connect(dsn)
    await ensure_region_schema(conn)
    say(f"scratch database {SCRATCH_DB} on {host}:{port}")
    return conn


async def _drop(settings: Settings) -> None:
    admin = await asyncpg.connect(settings.pg_dsn(region_database("na")))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
    finally:
        await admin.close()


def _rows(size: int, expiring: int, layout: str, now: dt.datetime,
          rng: random.Random) -> list[tuple]:
    """``size`` command rows; the first ``expiring`` deadlines are in the past."""
    tenants = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(100)]
    body = rng.randbytes(180)
    rows = []
    for i in range(size):
        if i < expiring:   # expired: up to an hour ago, oldest first
            deadline = now - dt.timedelta(seconds=3600 * (1 - i / expiring) + 1)
        else:              # due in the next day, in order
            deadline = now + dt.timedelta(seconds=60 + 86_400 * (i - expiring) / size)
        rows.append((uuid.UUID(int=rng.getrandbits(128), version=4), rng.choice(tenants),
                     "device_command", "command", uuid.UUID(int=rng.getrandbits(128), version=4),
                     uuid.UUID(int=rng.getrandbits(128), version=4), now, now, deadline,
                     "session_expiry", body))
    if layout == "shuffled":
        rng.shuffle(rows)
    return rows


async def _fill(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    await conn.execute("TRUNCATE records, deletion_audit")
    for i in range(0, len(rows), 100_000):
        await conn.copy_records_to_table("records", records=rows[i:i + 100_000], columns=COLUMNS)
    await conn.execute("VACUUM ANALYZE records")
    await conn.execute("CHECKPOINT")  # the COPY's dirty pages are written out before timing


async def _sweep(conn: asyncpg.Connection, now: dt.datetime, batch: int) -> tuple[int, float, int]:
    """(rows deleted, seconds, statements) of a sweeper-style loop."""
    deleted = statements = 0
    began = time.perf_counter()
    while True:
        got = await sweep_expired(conn, "na", now, batch, lambda deadline: 0.0)
        statements += 1
        n = sum(d.count for d in got)
        deleted += n
        if n < batch:
            break
    return deleted, time.perf_counter() - began, statements


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    sizes = [int(s) for s in args.sizes.split(",")]
    layouts = args.layouts.split(",")
    if args.expiring > min(sizes):
        raise SystemExit("--expiring must not exceed the smallest size")
    print(f"machine: {machine()}")
    print(f"settings: MDMBUS_SWEEP_BATCH={settings.sweep_batch}, {args.expiring:,} expiring "
          f"rows out of {', '.join(f'{s:,}' for s in sizes)}, layouts {', '.join(layouts)}, "
          f"best of {args.rounds}")
    conn = await _scratch(settings)
    rng = random.Random(args.seed)
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for layout in layouts:
            for size in sizes:
                # the same rows every round; deadlines are relative to ``now``, which the sweep
                # is given, so the wall clock does not matter
                now = dt.datetime.now(dt.timezone.utc)
                rows = _rows(size, args.expiring, layout, now, rng)
                for r in range(args.rounds):
                    began = time.perf_counter()
                    await _fill(conn, rows)
                    filled = time.perf_counter() - began
                    deleted, seconds, statements = await _sweep(conn, now, settings.sweep_batch)
                    if deleted != args.expiring:
                        raise RuntimeError(f"deleted {deleted:,} rows, expected "
                                           f"{args.expiring:,}")
                    left = await conn.fetchval("SELECT count(*) FROM records")
                    if left != size - args.expiring:
                        raise RuntimeError(f"{left:,} rows left, expected "
                                           f"{size - args.expiring:,}")
                    us = 1e6 * seconds / deleted
                    results.setdefault((layout, size), []).append(us)
                    say(f"  {layout} {size:,} rows, round {r + 1}: filled in {filled:.1f} s, "
                        f"{deleted:,} deleted in {seconds * 1000:.0f} ms ({statements} "
                        f"statements): {us:.2f} us/row")
    finally:
        await conn.close()
        if not args.keep:
            await _drop(settings)
    rows = []
    for layout in layouts:
        best = {size: min(results[(layout, size)]) for size in sizes}
        ratio = max(best.values()) / min(best.values())
        for size in sizes:
            rows.append((layout, size, best[size], max(results[(layout, size)]),
                         1e6 / best[size]))
        rows.append((f"{layout}: max/min", "", ratio, "", "met" if ratio <= 1.5 else "NOT met"))
    table(["layout", "store rows", "us/deleted row (best)", "worst round", "rows/s"], rows,
          title=f"sweep_expired: {args.expiring:,} expired rows deleted out of stores of "
                "each size (target: max/min within 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--expiring", type=int, default=5000)
    parser.add_argument("--layouts", default="ordered,shuffled")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="leave the scratch database")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
