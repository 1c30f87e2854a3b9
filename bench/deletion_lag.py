"""Deletion lag: from a row's deadline (or CM's durable write) to the row being gone, per rule.

    python -m bench.deletion_lag [--deadlines 10000] [--spread 60] [--speed 1000] [--region eu]
                                 [--rules session_expiry,delete_after_download,retention_purge]

Each rule is measured in its own phase, on one region (--region: its tenants, in the tenant
directory and the region's ``tenants`` table; its processes, started through the one launcher
on an accelerated shared clock, --speed simulated seconds per real second). Every lag is in real
seconds (deadlines converted back with mdmbus.clock.Clock.real_time_of), and every deletion
time is the ``deleted_at_real`` of the deletion_audit row that lists the id.

- session_expiry: --deadlines device sessions, each with one command, are written into the
  region store (as the pipeline stores them: the command's deadline is its session's expiry +
  MDMBUS_COMMAND_GRACE, rule session_expiry), their expiries spread evenly over --spread real
  seconds starting --lead seconds later; the region's sweeper (`mdmbus process sweeper
  --region R`, services.stores.expiry.sweep_deadlines) deletes them. Lag of a command = its
  deletion - the real time of its deadline.
- retention_purge: --deadlines tenants in their retention period, --rows-per-tenant records
  each, as services.rules.retention.end_subscription leaves them (the tenant's purge_at in the
  directory and the region store, every row's deadline the purge day, rule retention_purge),
  with purge days spread the same way; the sweeper deletes the rows by their deadline and then
  purges the tenant (services.rules.retention.sweep_due_purges, purge_tenant). Lag of a tenant
  = the last of its retention_purge audit rows (its tenant row goes last) - the real time of
  its purge day.
- delete_after_download: the region's pipeline, its gateway and the CM connector run, the
  connector with a token file for each of the phase's tenants (as the demo and the tests give
  them); relay records (R1..R6) are sent to mdm.<region>.relay at --relay-rate records/s; the
  pipeline stores them, the connector downloads them through the gateway, writes them to the
  CM database and acknowledges them; the gateway deletes the cloud copy. Lag = the deletion -
  relayed_records.received_at (the CM database's clock at the CM write, i.e. CM's durable
  store, just before its acknowledgement). Deleted before CM stored it would be a breach of
  rule 2: counted as "early" (must be 0). Also printed: how long each relay record stayed in
  the cloud store (stored_at_real -> deletion: the connector's long poll, the download, the CM
  write and the acknowledgement).

Target: p99 < 5 s for each rule. The audit's own figure (max of deletion_audit.max_lag_s: the
sweeper's lag behind the deadline; for an acknowledgement, the gateway's from the
cm_committed_at the connector sends) is printed beside, as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
import uuid
from typing import Any, Awaitable, Callable

from mdmbus.cli.launcher import Launcher
from mdmbus.clock import Clock
from mdmbus.contract import default_registry
from mdmbus.regions import REGIONS
from mdmbus.services.rules.audit import DELETE_AFTER_DOWNLOAD, RETENTION_PURGE, SESSION_EXPIRY
from mdmbus.services.simulators.records import RecordFactory
from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from bench.support import (Progress, RecordMix, at, check_stack, delete_tenants, launcher,
                           onboard_tenants, open_stores, parser as make_parser, percentile,
                           point_pipeline_at, producer, run_cli, say, start_gateway, table,
                           uuid_from, write_token)

__all__ = ["main"]

RULES = (SESSION_EXPIRY, DELETE_AFTER_DOWNLOAD, RETENTION_PURGE)
RELAY_MIX = {f"R{i}": 1 for i in range(1, 7)}
RECORD_COLUMNS = ["record_id", "tenant_id", "kind", "category", "device_id", "session_id",
                  "event_time", "stored_at", "deadline", "deadline_rule", "body"]


def _deadlines(clock: Clock, n: int, lead: float, spread: float,
               rng: random.Random) -> list[float]:
    """n simulated deadlines whose real times are spread evenly over [lead, lead + spread)
    seconds from now, in random order."""
    start = time.time() + lead
    real = [start + spread * i / n for i in range(n)]
    rng.shuffle(real)
    return [clock.origin + (t - clock.origin) * clock.speed for t in real]


async def _audited(stores: Stores, region: str, rule: str, since: float,
                   category: str | None = None) -> dict[Any, float]:
    """id -> deleted_at_real (epoch s) of every id listed by a ``rule`` audit row since
    ``since`` (the last one where an id is listed twice)."""
    out: dict[Any, float] = {}
    rows = await stores.region(region).fetch(
        "SELECT u.id, extract(epoch FROM a.deleted_at_real)::float8 AS t"
        " FROM deletion_audit a, unnest(a.record_ids) AS u(id)"
        " WHERE a.rule = $1 AND a.deleted_at_real >= $2"
        " AND ($3::text IS NULL OR a.category = $3)", rule, at(since), category)
    for r in rows:
        out[r["id"]] = max(out.get(r["id"], 0.0), r["t"])
    return out


async def _own_max_lag(stores: Stores, region: str, rule: str, since: float) -> float:
    got = await stores.region(region).fetchval(
        "SELECT max(max_lag_s) FROM deletion_audit WHERE rule = $1 AND deleted_at_real >= $2",
        rule, at(since))
    return float("nan") if got is None else got


async def _wait(what: str, remaining: Callable[[], Awaitable[int]], total: int, timeout: float,
                procs: Launcher) -> None:
    """Polls ``remaining()`` (rows not deleted yet) until 0; progress every 5 s."""
    progress = Progress(what, total, unit="deleted")
    deadline = time.monotonic() + timeout
    while True:
        left = await remaining()
        progress.update(total - left)
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {left:,} of {total:,} still there after "
                               f"{timeout:.0f} s; see {procs.log_dir}")
        procs.assert_alive()
        await asyncio.sleep(0.5)


def _lags(since_real: dict[Any, float], deleted: dict[Any, float]) -> tuple[list[float], int]:
    """Lags of the ids deleted, and how many were deleted before their time."""
    lags = [deleted[k] - t for k, t in since_real.items() if k in deleted]
    return lags, sum(1 for x in lags if x < 0)


# ----------------------------------------------------------------------------- the rules

async def session_expiry(settings: Settings, stores: Stores, args: argparse.Namespace,
                         rng: random.Random) -> dict[str, Any]:
    region = args.region
    procs = launcher(settings, "deletion-lag-session-expiry", speed=args.speed)
    clock = procs.clock
    registry = default_registry()
    tenants = await onboard_tenants(stores, 30, clock.now_dt(), rng, [region])
    try:
        expiries = _deadlines(clock, args.deadlines, args.lead, args.spread, rng)
        grace = settings.command_grace_s
        deadline_real: dict[uuid.UUID, float] = {}
        sessions, commands = [], []
        now = clock.now_dt()
        sample = RecordFactory(0, registry).make("device_command", tenants.ids[0],
                                                 clock.now_ms(), device_id=uuid_from(rng),
                                                 session_id=uuid_from(rng))
        body = registry.codec.encode("device_command", sample)
        for expires in expiries:
            tenant = uuid.UUID(rng.choice(tenants.ids))
            device, session, rid = (uuid.UUID(uuid_from(rng)) for _ in range(3))
            sessions.append((device, tenant, session, at(expires)))
            commands.append((rid, tenant, "device_command", "command", device, session, now,
                             now, at(expires + grace), SESSION_EXPIRY, body))
            deadline_real[rid] = clock.real_time_of(expires + grace)
        since = time.time()
        procs.start("sweeper", region)
        pool = stores.region(region)
        await pool.copy_records_to_table(
            "device_sessions", records=sessions,
            columns=["device_id", "tenant_id", "session_id", "expires_at"])
        await pool.copy_records_to_table("records", records=commands, columns=RECORD_COLUMNS)
        say(f"session_expiry: {args.deadlines:,} sessions with a command each in {region}, "
            f"expiring over {args.spread:.0f} s from {args.lead:.0f} s on (sweeper log in "
            f"{procs.log_dir})")
        if time.time() > min(deadline_real.values()):
            say("  warning: writing the rows took longer than --lead; the first deadlines "
                "passed before their rows were there")

        async def remaining() -> int:
            return await pool.fetchval(
                "SELECT count(*) FROM records WHERE tenant_id = ANY($1::uuid[])"
                " AND category = 'command' AND body IS NOT NULL", tenants.in_region(region))
        await _wait("session_expiry", remaining, args.deadlines,
                    args.lead + args.spread + args.timeout, procs)
        procs.stop()
        deleted = await _audited(stores, region, SESSION_EXPIRY, since, category="command")
        lags, early = _lags(deadline_real, deleted)
        return {"rule": SESSION_EXPIRY, "deadlines": len(deadline_real), "lags": lags,
                "early": early,
                "own": await _own_max_lag(stores, region, SESSION_EXPIRY, since)}
    finally:
        procs.stop()
        await delete_tenants(stores, tenants)


async def retention_purge(settings: Settings, stores: Stores, args: argparse.Namespace,
                          rng: random.Random) -> dict[str, Any]:
    region = args.region
    procs = launcher(settings, "deletion-lag-retention-purge", speed=args.speed)
    clock = procs.clock
    say(f"retention_purge: {args.deadlines:,} tenants of {region} in retention ...")
    # The purge days are fixed once the rows are in (their deadline is the purge day), so the
    # lead time starts after the tenants and rows are written; the days are set then.
    tenants = await onboard_tenants(stores, args.deadlines, clock.now_dt(), rng, [region],
                                    state="retention",
                                    purge_at=[clock.now_dt() + dt.timedelta(days=3650)]
                                    * args.deadlines)
    pool = stores.region(region)
    try:
        now = clock.now_dt()
        body = b"\x00" * 180
        far = now + dt.timedelta(days=3650)
        rows = [(uuid.UUID(uuid_from(rng)), t, "U9", "upload", None, None, now, now, far,
                 RETENTION_PURGE, body) for t in tenants.in_region(region)
                for _ in range(args.rows_per_tenant)]
        if rows:
            await pool.copy_records_to_table("records", records=rows, columns=RECORD_COLUMNS)
        purge_at = _deadlines(clock, args.deadlines, args.lead, args.spread, rng)
        ids = tenants.in_region(region)
        days = [at(p) for p in purge_at]
        # As end_subscription leaves a tenant: its purge day on the tenant (store and
        # directory) and as the deadline of every row it holds.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE tenants t SET purge_at = d.p FROM unnest($1::uuid[], $2::timestamptz[])"
                " AS d(id, p) WHERE t.tenant_id = d.id", ids, days)
            await conn.execute(
                "UPDATE records r SET deadline = t.purge_at FROM tenants t"
                " WHERE r.tenant_id = t.tenant_id AND t.tenant_id = ANY($1::uuid[])", ids)
        await stores.directory_pool.execute(
            "UPDATE tenant_directory t SET purge_at = d.p FROM unnest($1::uuid[],"
            " $2::timestamptz[]) AS d(id, p) WHERE t.tenant_id = d.id", ids, days)
        deadline_real = {t: clock.real_time_of(p) for t, p in zip(ids, purge_at)}
        since = time.time()
        procs.start("sweeper", region)
        say(f"  {args.rows_per_tenant} records each, purges due over {args.spread:.0f} s from "
            f"{args.lead:.0f} s on (sweeper log in {procs.log_dir})")
        if time.time() > min(deadline_real.values()):
            say("  warning: writing the rows took longer than --lead")

        async def remaining() -> int:
            return await pool.fetchval(
                "SELECT count(*) FROM tenants WHERE tenant_id = ANY($1::uuid[])", ids)
        await _wait("retention_purge", remaining, args.deadlines,
                    args.lead + args.spread + args.timeout, procs)
        procs.stop()
        deleted: dict[uuid.UUID, float] = {}
        for r in await pool.fetch(
                "SELECT tenant_id, max(extract(epoch FROM deleted_at_real))::float8 AS t"
                " FROM deletion_audit WHERE rule = $1 AND deleted_at_real >= $2"
                " GROUP BY tenant_id", RETENTION_PURGE, at(since)):
            deleted[r["tenant_id"]] = r["t"]
        lags, early = _lags(deadline_real, deleted)
        return {"rule": RETENTION_PURGE, "deadlines": len(deadline_real), "lags": lags,
                "early": early,
                "own": await _own_max_lag(stores, region, RETENTION_PURGE, since)}
    finally:
        procs.stop()
        await delete_tenants(stores, tenants)


async def delete_after_download(settings: Settings, stores: Stores, args: argparse.Namespace,
                                rng: random.Random) -> dict[str, Any]:
    region = args.region
    tokens = settings.state_dir / "bench-logs" / f"cm-tokens-{uuid.uuid4().hex[:8]}"
    tokens.mkdir(parents=True, mode=0o700)
    procs = launcher(settings, "deletion-lag-delete-after-download", speed=args.speed,
                     env={"MDMBUS_CM_TOKENS": str(tokens)})
    clock = procs.clock
    tenants = await onboard_tenants(stores, args.cm_tenants, clock.now_dt(), rng, [region])
    prod = producer(settings)
    pool = stores.region(region)
    try:
        for tenant in tenants.ids:
            write_token(settings, tokens, tenant, region)
        await point_pipeline_at(settings, region)
        since = time.time()
        procs.start("pipeline", region)
        await start_gateway(procs, settings, region)
        procs.start("cm-connector", None)
        mix = RecordMix(tenants, seed=rng.getrandbits(32), mix=RELAY_MIX)
        await prod.start()
        n = args.relay_records or args.deadlines
        say(f"delete_after_download: {n:,} relay records at {args.relay_rate:,.0f}/s through "
            f"the {region} pipeline, its gateway and the CM connector ({len(tenants.ids)} "
            f"tenants; logs in {procs.log_dir})")
        ids: set[uuid.UUID] = set()
        began = time.monotonic()
        progress = Progress("relay records sent", n)
        while len(ids) < n:
            due = min(n, int(args.relay_rate * (time.monotonic() - began)) + 1)
            while len(ids) < due:
                kind, record = mix.make(clock.now_ms())
                topic, key, value = mix.encode(kind, record)
                await prod.send(topic, value=value, key=key)
                ids.add(uuid.UUID(record["envelope"]["record_id"]))
            progress.update(len(ids))
            procs.assert_alive()
            await asyncio.sleep(0.01)
        await prod.flush()
        id_list = list(ids)

        async def remaining() -> int:
            """Records still holding data in the cloud, and records not stored yet."""
            got = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE body IS NOT NULL) AS data, count(*) AS rows"
                " FROM records WHERE record_id = ANY($1::uuid[])", id_list)
            return got["data"] + (n - got["rows"])
        await _wait("delete_after_download", remaining, n, args.timeout + 60, procs)
        procs.stop()
        durable = {r["record_id"]: r["t"] for r in await stores.cm.fetch(
            "SELECT record_id, extract(epoch FROM received_at)::float8 AS t"
            " FROM relayed_records WHERE record_id = ANY($1::uuid[])", id_list)}
        stored = {r["record_id"]: r["t"] for r in await pool.fetch(
            "SELECT record_id, extract(epoch FROM stored_at_real)::float8 AS t"
            " FROM records WHERE record_id = ANY($1::uuid[])", id_list)}
        deleted = await _audited(stores, region, DELETE_AFTER_DOWNLOAD, since)
        lags, early = _lags(durable, deleted)
        in_cloud, _ = _lags(stored, deleted)
        missing = n - len(durable)
        if missing:
            say(f"  warning: {missing:,} relay records are not in the CM database")
        return {"rule": DELETE_AFTER_DOWNLOAD, "deadlines": n, "lags": lags, "early": early,
                "own": await _own_max_lag(stores, region, DELETE_AFTER_DOWNLOAD, since),
                "in_cloud": in_cloud}
    finally:
        await prod.stop()
        procs.stop()
        await delete_tenants(stores, tenants)
        for path in tokens.glob("*.json"):
            path.unlink()
        tokens.rmdir()


# ----------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings, [args.region])
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    print(f"settings: region {args.region}, clock speed {args.speed:g}, MDMBUS_SWEEP_INTERVAL="
          f"{settings.sweep_interval_s} s, MDMBUS_SWEEP_BATCH={settings.sweep_batch}, "
          f"MDMBUS_COMMAND_GRACE={settings.command_grace_s} s, {args.deadlines:,} deadlines a "
          f"rule over {args.spread:.0f} s ({args.deadlines / args.spread:,.0f}/s), seed {seed}")
    stores = await open_stores(settings, [args.region], cm=True)
    phases = {SESSION_EXPIRY: session_expiry, DELETE_AFTER_DOWNLOAD: delete_after_download,
              RETENTION_PURGE: retention_purge}
    results = []
    try:
        for rule in args.rules.split(","):
            if rule not in phases:
                raise SystemExit(f"unknown rule {rule!r}; known: {', '.join(phases)}")
            results.append(await phases[rule](settings, stores, args, rng))
    finally:
        await stores.close()
    rows = []
    for r in results:
        lags = r["lags"]
        p99 = percentile(lags, 99)
        rows.append((r["rule"], r["deadlines"], len(lags), percentile(lags, 50), p99,
                     max(lags) if lags else float("nan"), r["early"], r["own"],
                     "met" if lags and p99 < 5 else "NOT met"))
    table(["rule", "deadlines", "measured", "p50 s", "p99 s", "max s", "early",
           "audit max_lag_s", "p99 < 5 s"], rows,
          title="Deadline (or CM's durable write) -> row gone, real seconds")
    print("early: deleted before its deadline, or before CM had stored it (must be 0); "
          "delete_after_download's deadline is relayed_records.received_at in the CM database")
    for r in results:
        if r.get("in_cloud"):
            v = r["in_cloud"]
            table(["relay record in the cloud store", "records", "p50 s", "p99 s", "max s"],
                  [("stored_at_real -> deleted (long poll, download, CM write, ack)", len(v),
                    percentile(v, 50), percentile(v, 99), max(v))],
                  title="How long a relay record stayed in the cloud with CM online")


def main() -> None:
    parser = make_parser("bench.deletion_lag", __doc__)
    parser.add_argument("--deadlines", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=60.0,
                        help="real seconds over which the deadlines fall")
    parser.add_argument("--lead", type=float, default=10.0,
                        help="real seconds from the start of a phase to its first deadline")
    parser.add_argument("--speed", type=float, default=1000.0,
                        help="simulated seconds per real second of the shared clock")
    parser.add_argument("--region", choices=REGIONS, default="eu",
                        help="the region of every tenant and process of the run")
    parser.add_argument("--relay-records", type=int, default=None,
                        help="relay records sent for delete_after_download (default: "
                             "--deadlines)")
    parser.add_argument("--relay-rate", type=float, default=500.0,
                        help="relay records/s sent in the delete_after_download phase")
    parser.add_argument("--cm-tenants", type=int, default=30,
                        help="tenants of the delete_after_download phase, each with its own "
                             "connector loop")
    parser.add_argument("--rows-per-tenant", type=int, default=3)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait past the last deadline")
    parser.add_argument("--seed", type=int, default=None)
    run_cli(run, parser)


if __name__ == "__main__":
    main()
