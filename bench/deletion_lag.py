"""Deletion lag: from a row's deadline (or CM's acknowledgement) to the row being gone, per rule.

    python -m bench.deletion_lag [--deadlines 10000] [--spread 60] [--speed 1000]
                                 [--rules session_expiry,delete_after_download,retention_purge]

Each rule is measured in its own phase, with the real processes on an accelerated shared clock
(--speed simulated seconds per real second); every lag is converted back to real seconds with
mdmbus.clock.Clock.real_time_of.

- session_expiry: --deadlines device sessions, each with one command, are written into the
  region stores (as the pipeline stores them: the command's deadline is its session's expiry
  + MDMBUS_COMMAND_GRACE), their expiries spread evenly over --spread real seconds starting
  --lead seconds later; the sweeper (`mdmbus process sweeper`) deletes them. Lag of a command =
  deleted_at_real of the deletion_audit row that lists it - the real time of its deadline.
- retention_purge: --deadlines tenants in their retention period, --rows-per-tenant records
  each, with purge_at deadlines spread the same way; the sweeper purges them. Lag of a tenant =
  the last deleted_at_real of its retention_purge audit rows (its tenant row goes last) - the
  real time of its purge_at.
- delete_after_download: the pipeline and the CM connector run; relay records (R1..R6) are
  sent at --relay-rate records/s; CM stores each and acknowledges it; the pipeline deletes the
  cloud copy. Lag = deleted_at_real - the real time of the ack's cm_committed_at (stamped right
  after CM's commit). An ack that overtakes its record leaves a tombstone first and the record
  is never stored with data: counted apart, no lag. So that at least --deadlines lags are
  measured, --relay-records (default 1.4 x --deadlines; about a quarter of the acks overtake)
  are sent; a warning says when fewer were measured.

Target: p99 < 5 s for each rule. The sweeper's own figure (max of deletion_audit.max_lag_s)
is printed beside, as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.contract import default_registry
from mdmbus.settings import Settings
from bench.support import (CM_GROUP, PIPELINE_GROUP, PIPELINE_TOPICS, Processes, Progress,
                           RecordMix, check_stack, close_pools, delete_tenants,
                           end_offsets, fast_forward, machine, onboard_tenants, percentile,
                           producer, region_pools, say, table, uuid_from, run_cli)
from mdmbus.services.rules.audit import DELETE_AFTER_DOWNLOAD, RETENTION_PURGE, SESSION_EXPIRY
from mdmbus.services.simulators.records import RecordFactory

__all__ = ["main"]

RULES = (SESSION_EXPIRY, DELETE_AFTER_DOWNLOAD, RETENTION_PURGE)
RELAY_MIX = {f"R{i}": 1 for i in range(1, 7)}


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)


def _deadlines(clock: Clock, n: int, lead: float, spread: float,
               rng: random.Random) -> list[float]:
    """n simulated deadlines whose real times are spread evenly over [lead, lead + spread)
    seconds from now, in random order."""
    start = time.time() + lead
    real = [start + spread * i / n for i in range(n)]
    rng.shuffle(real)
    return [clock.origin + (t - clock.origin) * clock.speed for t in real]


async def _audited(pools: dict[str, asyncpg.Pool], rule: str, since: float,
                   category: str | None = None) -> dict[Any, float]:
    """id -> deleted_at_real (epoch s) of every id listed by a ``rule`` audit row since
    ``since`` (the last one where an id is listed twice)."""
    out: dict[Any, float] = {}
    for pool in pools.values():
        rows = await pool.fetch(
            "SELECT u.id, extract(epoch FROM a.deleted_at_real)::float8 AS t"
            " FROM deletion_audit a, unnest(a.record_ids) AS u(id)"
            " WHERE a.rule = $1 AND a.deleted_at_real >= $2"
            " AND ($3::text IS NULL OR a.category = $3)", rule, _at(since), category)
        for r in rows:
            out[r["id"]] = max(out.get(r["id"], 0.0), r["t"])
    return out


async def _own_max_lag(pools: dict[str, asyncpg.Pool], rule: str, since: float) -> float:
    got = [await p.fetchval("SELECT max(max_lag_s) FROM deletion_audit WHERE rule = $1"
                            " AND deleted_at_real >= $2", rule, _at(since))
           for p in pools.values()]
    got = [g for g in got if g is not None]
    return max(got) if got else float("nan")


async def _wait(what: str, remaining, total: int, timeout: float, procs: Processes) -> None:
    """Polls ``remaining()`` (rows not deleted yet) until 0; progress every 5 s."""
    progress = Progress(what, total, unit="deleted")
    deadline = time.monotonic() + timeout
    while True:
        left = await remaining()
        progress.update(total - left)
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {left:,} of {total:,} rows still there after "
                               f"{timeout:.0f} s; see {procs.log_dir}")
        procs.check_alive()
        await asyncio.sleep(0.5)


def _lags(deadline_real: dict[Any, float], deleted: dict[Any, float]) -> tuple[list[float], int]:
    lags = [deleted[k] - t for k, t in deadline_real.items() if k in deleted]
    return lags, sum(1 for x in lags if x < 0)


# ----------------------------------------------------------------------------- the rules

async def session_expiry(settings: Settings, pools: dict[str, asyncpg.Pool],
                         args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    procs = Processes(settings, speed=args.speed)
    clock = procs.clock
    registry = default_registry()
    tenants = await onboard_tenants(pools, 30, clock.now_dt(), rng)
    try:
        expiries = _deadlines(clock, args.deadlines, args.lead, args.spread, rng)
        grace = settings.command_grace_s
        deadline_real: dict[uuid.UUID, float] = {}
        by_region: dict[str, tuple[list, list]] = {r: ([], []) for r in pools}
        now = clock.now_dt()
        sample = RecordFactory(0, registry).make("device_command", tenants.ids[0],
                                                 clock.now_ms(), device_id=uuid_from(rng),
                                                 session_id=uuid_from(rng))
        body = registry.codec.encode("device_command", sample)
        for expires in expiries:
            tenant = rng.choice(tenants.ids)
            device, session, rid = (uuid.UUID(uuid_from(rng)) for _ in range(3))
            sessions, commands = by_region[tenants.region_of[tenant]]
            sessions.append((device, uuid.UUID(tenant), session, _at(expires)))
            commands.append((rid, uuid.UUID(tenant), "device_command", "command", device,
                             session, now, now, _at(expires + grace), SESSION_EXPIRY, body))
            deadline_real[rid] = clock.real_time_of(expires + grace)
        since = time.time()
        procs.start("sweeper")
        for region, (sessions, commands) in by_region.items():
            await pools[region].copy_records_to_table(
                "device_sessions", records=sessions,
                columns=["device_id", "tenant_id", "session_id", "expires_at"])
            await pools[region].copy_records_to_table(
                "records", records=commands,
                columns=["record_id", "tenant_id", "kind", "category", "device_id",
                         "session_id", "event_time", "stored_at", "deadline", "deadline_rule",
                         "body"])
        say(f"session_expiry: {args.deadlines:,} sessions with a command each, expiring over "
            f"{args.spread:.0f} s from {args.lead:.0f} s on (sweeper log in {procs.log_dir})")
        if time.time() > min(deadline_real.values()):
            say("  warning: writing the rows took longer than --lead; the first deadlines "
                "passed before their rows were there")

        async def remaining() -> int:
            return sum([await pools[r].fetchval(
                "SELECT count(*) FROM records WHERE tenant_id = ANY($1::uuid[])"
                " AND category = 'command' AND body IS NOT NULL", tenants.in_region(r))
                for r in pools])
        await _wait("session_expiry", remaining, args.deadlines,
                    args.lead + args.spread + args.timeout, procs)
        procs.stop()
        deleted = await _audited(pools, SESSION_EXPIRY, since, category="command")
        lags, early = _lags(deadline_real, deleted)
        return {"rule": SESSION_EXPIRY, "deadlines": len(deadline_real), "lags": lags,
                "early": early, "apart": 0, "own": await _own_max_lag(pools, SESSION_EXPIRY, since)}
    finally:
        procs.stop()
        await delete_tenants(pools, tenants)


async def retention_purge(settings: Settings, pools: dict[str, asyncpg.Pool],
                          args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    procs = Processes(settings, speed=args.speed)
    clock = procs.clock
    purge_at = _deadlines(clock, args.deadlines, args.lead, args.spread, rng)
    tenants = await onboard_tenants(pools, args.deadlines, clock.now_dt(), rng,
                                    state="retention", purge_at=[_at(p) for p in purge_at])
    try:
        deadline_real = {uuid.UUID(t): clock.real_time_of(p) for t, p in zip(tenants.ids, purge_at)}
        body = b"\x00" * 180
        now = clock.now_dt()
        for region, pool in pools.items():
            rows = [(uuid.UUID(uuid_from(rng)), t, "U9", "upload", None, None, now, now, None,
                     None, body) for t in tenants.in_region(region)
                    for _ in range(args.rows_per_tenant)]
            if rows:
                await pool.copy_records_to_table(
                    "records", records=rows,
                    columns=["record_id", "tenant_id", "kind", "category", "device_id",
                             "session_id", "event_time", "stored_at", "deadline",
                             "deadline_rule", "body"])
        since = time.time()
        procs.start("sweeper")
        say(f"retention_purge: {args.deadlines:,} tenants in retention with "
            f"{args.rows_per_tenant} records each, purges due over {args.spread:.0f} s from "
            f"{args.lead:.0f} s on (sweeper log in {procs.log_dir})")
        if time.time() > min(deadline_real.values()):
            say("  warning: writing the rows took longer than --lead")

        async def remaining() -> int:
            return sum([await pools[r].fetchval(
                "SELECT count(*) FROM tenants WHERE tenant_id = ANY($1::uuid[])",
                tenants.in_region(r)) for r in pools])
        await _wait("retention_purge", remaining, args.deadlines,
                    args.lead + args.spread + args.timeout, procs)
        procs.stop()
        deleted: dict[uuid.UUID, float] = {}
        for pool in pools.values():
            for r in await pool.fetch(
                    "SELECT tenant_id, max(extract(epoch FROM deleted_at_real))::float8 AS t"
                    " FROM deletion_audit WHERE rule = $1 AND deleted_at_real >= $2"
                    " GROUP BY tenant_id", RETENTION_PURGE, _at(since)):
                deleted[r["tenant_id"]] = r["t"]
        lags, early = _lags(deadline_real, deleted)
        return {"rule": RETENTION_PURGE, "deadlines": len(deadline_real), "lags": lags,
                "early": early, "apart": 0,
                "own": await _own_max_lag(pools, RETENTION_PURGE, since)}
    finally:
        procs.stop()
        await delete_tenants(pools, tenants)


async def delete_after_download(settings: Settings, pools: dict[str, asyncpg.Pool],
                                args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    procs = Processes(settings, speed=args.speed)
    clock = procs.clock
    tenants = await onboard_tenants(pools, 30, clock.now_dt(), rng)
    registry = default_registry()
    prod = producer(settings)
    try:
        await fast_forward(settings, PIPELINE_GROUP, PIPELINE_TOPICS)
        await fast_forward(settings, CM_GROUP, [topics.RELAY])
        acks_from = await end_offsets(settings, topics.RELAY_ACK)
        since = time.time()
        procs.start("pipeline")
        procs.start("cm-connector")
        mix = RecordMix(tenants, seed=rng.getrandbits(32), mix=RELAY_MIX)
        await prod.start()
        n = args.relay_records or round(args.deadlines * 1.4)
        say(f"delete_after_download: {n:,} relay records at {args.relay_rate:,.0f}"
            f"/s through the pipeline and the CM connector (logs in {procs.log_dir})")
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
            procs.check_alive()
            await asyncio.sleep(0.01)
        await prod.flush()

        async def remaining() -> int:
            """Records still holding data in the cloud, and records not arrived yet."""
            data = rows = 0
            for r, pool in pools.items():
                got = await pool.fetchrow(
                    "SELECT count(*) FILTER (WHERE body IS NOT NULL) AS data, count(*) AS rows"
                    " FROM records WHERE tenant_id = ANY($1::uuid[]) AND category = 'relay'",
                    tenants.in_region(r))
                data += got["data"]
                rows += got["rows"]
            return data + max(0, n - rows)
        await _wait("delete_after_download", remaining, n, args.timeout + 60, procs)
        procs.stop()
        acked = await _acks(settings, registry, acks_from, ids, clock)
        deleted = await _audited(pools, DELETE_AFTER_DOWNLOAD, since)
        lags, early = _lags(acked, deleted)
        if len(lags) < args.deadlines:
            say(f"  warning: {len(lags):,} lags measured, fewer than --deadlines "
                f"{args.deadlines:,}: raise --relay-records")
        apart = sum(1 for k in ids if k not in deleted)
        return {"rule": DELETE_AFTER_DOWNLOAD, "deadlines": len(acked), "lags": lags,
                "early": early, "apart": apart,
                "own": await _own_max_lag(pools, DELETE_AFTER_DOWNLOAD, since)}
    finally:
        await prod.stop()
        procs.stop()
        await delete_tenants(pools, tenants)


async def _acks(settings: Settings, registry, start: dict[TopicPartition, int],
                ids: set[uuid.UUID], clock: Clock) -> dict[uuid.UUID, float]:
    """relay record id -> real time of CM's commit, from the acknowledgements on the topic."""
    end = await end_offsets(settings, topics.RELAY_ACK)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False)
    await consumer.start()
    out: dict[uuid.UUID, float] = {}
    try:
        consumer.assign(list(start))
        for tp, off in start.items():
            consumer.seek(tp, off)
        left = {tp: end[tp] - start[tp] for tp in start}
        while any(v > 0 for v in left.values()):
            got = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in got.items():
                for m in msgs:
                    if m.offset >= end[tp]:
                        continue
                    left[tp] -= 1
                    rec = registry.codec.decode(m.value).record
                    rid = uuid.UUID(str(rec["relay_record_id"]))
                    if rid in ids:
                        committed = rec["cm_committed_at"].timestamp()
                        out[rid] = min(out.get(rid, float("inf")), clock.real_time_of(committed))
    finally:
        await consumer.stop()
    return out


# ----------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    print(f"machine: {machine()}")
    print(f"settings: clock speed {args.speed:g}, MDMBUS_SWEEP_INTERVAL="
          f"{settings.sweep_interval_s} s, MDMBUS_SWEEP_BATCH={settings.sweep_batch}, "
          f"MDMBUS_COMMAND_GRACE={settings.command_grace_s} s, {args.deadlines:,} deadlines a "
          f"rule over {args.spread:.0f} s ({args.deadlines / args.spread:,.0f}/s), seed {seed}")
    pools = await region_pools(settings)
    phases = {SESSION_EXPIRY: session_expiry, DELETE_AFTER_DOWNLOAD: delete_after_download,
              RETENTION_PURGE: retention_purge}
    results = []
    try:
        for rule in args.rules.split(","):
            if rule not in phases:
                raise SystemExit(f"unknown rule {rule!r}; known: {', '.join(phases)}")
            results.append(await phases[rule](settings, pools, args, rng))
    finally:
        await close_pools(pools)
    rows = []
    for r in results:
        lags = r["lags"]
        p99 = percentile(lags, 99)
        rows.append((r["rule"], r["deadlines"], len(lags), percentile(lags, 50), p99,
                     max(lags) if lags else float("nan"), r["early"], r["apart"], r["own"],
                     "met" if lags and p99 < 5 else "NOT met"))
    table(["rule", "deadlines", "measured", "p50 s", "p99 s", "max s", "early", "ack first",
           "audit max_lag_s", "p99 < 5 s"], rows,
          title="Deadline (or CM acknowledgement) -> row gone, real seconds")
    print("early: deleted before the deadline (must be 0); ack first: acknowledgement "
          "overtook its record, which was never stored with data (no lag)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadlines", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=60.0,
                        help="real seconds over which the deadlines fall")
    parser.add_argument("--lead", type=float, default=10.0,
                        help="real seconds from the start of a phase to its first deadline")
    parser.add_argument("--speed", type=float, default=1000.0,
                        help="simulated seconds per real second of the shared clock")
    parser.add_argument("--relay-records", type=int, default=None,
                        help="relay records sent for delete_after_download (default 1.4 x "
                             "--deadlines, so that --deadlines lags are measured)")
    parser.add_argument("--relay-rate", type=float, default=500.0,
                        help="relay records/s sent in the delete_after_download phase")
    parser.add_argument("--rows-per-tenant", type=int, default=3)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait past the last deadline")
    parser.add_argument("--seed", type=int, default=None)
    run_cli(run, parser)


if __name__ == "__main__":
    main()
