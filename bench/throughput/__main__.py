"""``python -m bench.throughput``: the run, in order (see bench/throughput/__init__.py)."""

from __future__ import annotations

import argparse
import random
import time

from mdmbus.clock import Clock
from mdmbus.regions import REGIONS
from mdmbus.settings import Settings
from bench import throughput
from bench.support import (RecordMix, check_stack, delete_tenants, forget_rows, onboard_tenants,
                           open_stores, parser as make_parser, run_cli, say)
from bench.throughput import baselines as bl
from bench.throughput.drain import DrainResult, drain
from bench.throughput.peer import peer_drain
from bench.throughput.produce import build_load, produce
from bench.throughput.profile import prefix, stages, summarize
from bench.throughput.report import report
from bench.throughput.seal import SealCost, seal_cost, store_rows

__all__ = ["main", "run"]

#: --sealing's words: whether the drain's workers seal every body (mdmbus as it runs) or store
#: them in clear (bench.unsealed, benchmarks only), to measure what sealing costs.
_SEALING = {"on": True, "off": False}


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    region = args.region
    await check_stack(settings, [region])
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    modes = [m.strip() for m in args.sealing.split(",") if m.strip()]
    unknown = [m for m in modes if m not in _SEALING]
    if unknown or not modes:
        raise SystemExit(f"--sealing {args.sealing!r}: each mode is 'on' or 'off'")
    sealing = [_SEALING[m] for m in modes]
    if True not in sealing:
        raise SystemExit("--sealing must include 'on' (the drains as mdmbus runs)")
    peers = [int(n) for n in args.peer.split(",") if n.strip()]
    in_flight: list[int | None] = ([int(k) for k in args.in_flight.split(",") if k.strip()]
                                   if args.in_flight else [None])
    if args.seed is None:
        args.seed = random.SystemRandom().getrandbits(32)
    print(f"load: {args.n:,} upload records of {args.tenants} tenants of {region} (seed "
          f"{args.seed}); MDMBUS_BATCH_SIZE={settings.batch_size} MDMBUS_BATCH_WAIT="
          f"{settings.batch_wait_s} s; Kafka {settings.kafka_bootstrap}, PostgreSQL "
          f"{settings.pg_host}:{settings.pg_port}")
    stores = await open_stores(settings, [region])
    rng = random.Random(args.seed)
    clock = Clock(1.0, time.time())
    tenants = await onboard_tenants(stores, args.tenants, clock.now_dt(), rng, [region])
    try:
        await stores.region(region).execute("VACUUM ANALYZE records")
        say(f"building {args.n:,} records in memory ...")
        load = build_load(RecordMix(tenants, seed=args.seed), args.n, clock, region,
                          rows=args.baseline or args.seal_rounds > 0)
        say(f"  {load.bytes / load.count:.0f} bytes each on average")

        # The batch steps are timed first, and their rows deleted before the drains: what
        # --keep leaves is then the last drain's rows, not the stage timing's.
        steps: list[tuple[str, float, float]] = []
        if args.stages:
            say(f"timing the pipeline's batch steps in this process on {args.stages:,} "
                "records ...")
            steps = await stages(settings, stores, load, args.stages,
                                 lambda: forget_rows(stores, tenants))
            await forget_rows(stores, tenants)

        baselines: dict[str, bl.Baseline] = {}
        runs: list[DrainResult] = []
        # For each number of workers: the levers off (one write in flight), then each
        # MDMBUS_WRITES_IN_FLIGHT asked for, sealed; then, bodies in clear, the last of them.
        plan: list[tuple[int, int | None, bool, bool]] = []
        for w in workers:
            if not args.levers_on:
                plan.append((w, 1, True, False))
            plan += [(w, k, True, True) for k in in_flight]
            if False in sealing:
                plan.append((w, in_flight[-1], False, True))
        for i, (w, k, sealed, levers) in enumerate(plan):
            if i:
                await forget_rows(stores, tenants)
            first_run = i == 0
            label = (f"{w} worker{'s' if w > 1 else ''}"
                     + ("" if levers else ", levers off (bench only)")
                     + ("" if k is None else f", {k} write{'s' if k > 1 else ''} in flight")
                     + ("" if sealed else ", bodies in clear (bench only)"))
            produced = await produce(settings, load, index=first_run and args.baseline,
                                     label=f"produced for {label}")
            say(f"  produced at {produced.count / produced.seconds:,.0f} records/s")
            if first_run and args.baseline:
                say("baseline: consume-only and the consume -> COPY loop on the same bytes, "
                    "before the workers read (and truncate) them ...")
                baselines[bl.CONSUME] = await bl.consume_only(settings, stores, produced)
                baselines[bl.LOOP] = await bl.consume_copy(settings, stores, load, produced,
                                                           settings.batch_size)
            runs.append(await drain(settings, stores, tenants, region, produced, w, label,
                                    stall_s=args.stall, sealed=sealed, in_flight=k,
                                    levers=levers))
        # The peer, on the same messages, after mdmbus's drains (the load produced anew).
        for n in peers:
            await forget_rows(stores, tenants)
            produced = await produce(settings, load, label=f"produced for the peer, {n} "
                                                           f"process{'es' if n > 1 else ''}")
            runs.append(await peer_drain(settings, stores, tenants, region, produced, n,
                                         stall_s=args.stall))
        if args.baseline:
            say("baseline: COPY-only ...")
            baselines[bl.COPY] = await bl.copy_only(settings, stores, load, settings.batch_size)
            await bl.drop_scratch(stores, region)
            # the order the report prints them in
            baselines = {k: baselines[k] for k in (bl.CONSUME, bl.COPY, bl.LOOP)}

        profile_path = None
        if args.profile:
            await forget_rows(stores, tenants)
            n = min(args.profile_n, load.count)
            profile_path = (settings.state_dir / "bench-logs" /
                            f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.cprofile")
            produced = await produce(settings, load, first=load.count - n,
                                     label="produced for the profiled worker")
            runs.append(await drain(settings, stores, tenants, region, produced, 1,
                                    f"1 worker under cProfile (last {n:,} records)",
                                    prefix=prefix(profile_path), stall_s=args.stall))
        seal: SealCost | None = None
        if args.seal_rounds > 0:
            # After the drains, so that nothing of this run competes with it for the cores.
            rows = store_rows(load.rows[:args.seal_n])
            say(f"timing the seal in this process on {len(rows):,} of the load's rows "
                f"({args.seal_rounds} rounds) ...")
            seal = seal_cost(rows, settings.batch_size, args.seal_rounds)
        report(settings, load, baselines, runs, steps, seal=seal)
        if profile_path is not None:
            if profile_path.exists():
                summarize(profile_path)
            else:
                print(f"\nno profile was written to {profile_path} (see the worker's log)")
    finally:
        if not args.keep:
            say("cleaning up: the run's rows, tenants and scratch table ...")
            await delete_tenants(stores, tenants)
            await bl.drop_scratch(stores, region)
            await stores.region(region).execute("VACUUM ANALYZE records")
        await stores.close()


def main() -> None:
    parser = make_parser("bench.throughput", throughput.__doc__)
    parser.add_argument("--n", "--records", dest="n", type=int, default=1_000_000,
                        help="upload records in the load (default 1,000,000)")
    parser.add_argument("--region", choices=REGIONS, default="eu",
                        help="the region of every tenant of the load, and of the workers")
    parser.add_argument("--workers", default="1,2",
                        help="a drain for each of these numbers of workers (default 1,2)")
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--sealing", default="on,off",
                        help="for each number of workers, drains with bodies sealed (on, as "
                             "mdmbus runs) and one more with bodies stored in clear (off: "
                             "bench.unsealed, benchmarks only; with the last --in-flight), to "
                             "report sealing's CPU per record in the same run (default on,off)")
    parser.add_argument("--seal-n", type=int, default=50_000, metavar="N",
                        help="after the drains, time the seal in this process on the first N "
                             "rows of the load (services/stores/sealing.sealed_record_tuples "
                             "against the same rows in clear), set against the sealed drain's "
                             "worker CPU a record (default 50,000)")
    parser.add_argument("--seal-rounds", type=int, default=5, metavar="R",
                        help="rounds of that timing, best kept (0: skip it)")
    parser.add_argument("--in-flight", default="", metavar="K,..",
                        help="for each number of workers, a drain for each of these "
                             "MDMBUS_WRITES_IN_FLIGHT (e.g. 1,2: the writes one at a time and "
                             "overlapped, in the same run; default: the setting as given)")
    parser.add_argument("--levers-off", dest="levers_on", action="store_false",
                        help="for each number of workers, first a drain with the CPU levers "
                             "off (bench.levers_off: the closure-walk validator, one histogram "
                             "observation a record, one write in flight), benchmarks only")
    parser.add_argument("--peer", default="", metavar="N,..",
                        help="after mdmbus's drains, one drain of the Quix Streams peer "
                             "(bench/peer/quix_upload.py, in .venv-peer) for each of these "
                             "numbers of processes (e.g. 1,2)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the raw baseline (and do not keep the rows for it)")
    parser.add_argument("--profile", action="store_true",
                        help="one more drain, one worker under cProfile; print its profile")
    parser.add_argument("--profile-n", type=int, default=100_000, metavar="N",
                        help="the profiled drain takes the last N records of the load")
    parser.add_argument("--stages", type=int, default=20_000, metavar="N",
                        help="time the pipeline's batch steps one by one in this process on N "
                             "of the records (0: skip)")
    parser.add_argument("--seed", type=int, default=None,
                        help="of the tenants and records (default: a fresh one each run)")
    parser.add_argument("--stall", type=float, default=120.0,
                        help="give up after this many seconds without progress")
    parser.add_argument("--keep", action="store_true", help="leave rows and tenants in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
