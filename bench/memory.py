"""Processor memory over a sustained run: the pipeline worker's resident set, sampled.

    python -m bench.memory [--minutes 10] [--interval 5] [--rate 400] [--speed 100]

Starts the pipeline worker, the CM connector and the sweeper on a shared clock (--speed), and
drives them with the demo's simulated world (services.simulators.workload.SimulatedWorld:
uploads of every kind, device sessions with commands, relayed data and inventory cache, tenants
that leave or ask for deletion, a trickle of bad input; --rate is its knob, the records/s it
actually sends are printed). Every --interval seconds it prints the resident memory (VmRSS of
/proc/PID/status) of each process. At the end: a least-squares line through the pipeline
worker's samples after the first --warmup-minutes, its slope in MB/min with its standard error,
and a verdict: steady growth if the slope is more than two standard errors above 0 and the line
rises more than 2 MB over the window. The rows the run stored are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import asyncpg

from mdmbus.regions import CM_DATABASE
from mdmbus.settings import Settings
from bench.support import (CM_GROUP, PIPELINE_GROUP, PIPELINE_TOPICS, Processes, check_stack,
                           close_pools, fast_forward, linear_fit, machine, producer,
                           region_pools, rss_mb, say, table, run_cli)
from mdmbus import topics
from mdmbus.services.simulators.workload import SimulatedWorld

__all__ = ["main"]

PROCESSES = ("pipeline", "cm-connector", "sweeper")


@dataclass
class _World(SimulatedWorld):
    """The demo's world, remembering every tenant it onboarded (to clean up after)."""

    onboarded: list[str] = field(default_factory=list)

    async def onboard(self):  # type: ignore[override]
        tenant = await super().onboard()
        self.onboarded.append(tenant.tenant_id)
        return tenant


async def _cleanup(settings: Settings, pools: dict[str, asyncpg.Pool], tenants: list[str]) -> None:
    ids = [uuid.UUID(t) for t in tenants]
    for pool in pools.values():
        for statement in ("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])",
                          "DELETE FROM device_sessions WHERE tenant_id = ANY($1::uuid[])",
                          "DELETE FROM deletion_audit WHERE tenant_id = ANY($1::uuid[])",
                          "DELETE FROM tenants WHERE tenant_id = ANY($1::uuid[])",
                          "DELETE FROM purged_tenants WHERE tenant_id = ANY($1::uuid[])"):
            await pool.execute(statement, ids)
    cm = await asyncpg.connect(settings.pg_dsn(CM_DATABASE))
    try:
        await cm.execute("DELETE FROM relayed_records WHERE tenant_id = ANY($1::uuid[])", ids)
    finally:
        await cm.close()


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"machine: {machine()}")
    print(f"settings: {args.minutes:g} min, a sample every {args.interval:g} s, world rate "
          f"{args.rate:g}, clock speed {args.speed:g}, MDMBUS_BATCH_SIZE={settings.batch_size} "
          f"MDMBUS_BATCH_WAIT={settings.batch_wait_s} s, seed {seed}")
    pools = await region_pools(settings)
    await fast_forward(settings, PIPELINE_GROUP, PIPELINE_TOPICS)
    await fast_forward(settings, CM_GROUP, [topics.RELAY])
    procs = Processes(settings, speed=args.speed)
    prod = producer(settings)
    world = _World(prod, procs.clock, rate=args.rate, tenants=args.tenants, seed=seed)
    stop = asyncio.Event()
    samples: list[tuple[float, dict[str, float | None], int]] = []
    try:
        for name in PROCESSES:
            procs.start(name)
        say(f"processes started (logs in {procs.log_dir})")
        await prod.start()
        driver = asyncio.create_task(world.run(stop))
        began = time.monotonic()
        print(f"\n{'min':>6} {'pipeline MB':>12} {'cm-conn MB':>11} {'sweeper MB':>11} "
              f"{'records sent':>13} {'sent/s':>8}", flush=True)
        while True:
            elapsed = time.monotonic() - began
            procs.check_alive()
            if driver.done():
                driver.result()  # raises what stopped it
                raise RuntimeError("the simulated world stopped")
            rss = {name: rss_mb(procs.pid(name)) for name in PROCESSES}
            samples.append((elapsed / 60, rss, world.sent))
            print(f"{elapsed / 60:6.2f} {rss['pipeline'] or 0:12.1f} "
                  f"{rss['cm-connector'] or 0:11.1f} {rss['sweeper'] or 0:11.1f} "
                  f"{world.sent:13,} {world.sent / elapsed if elapsed else 0:8,.0f}", flush=True)
            if elapsed >= args.minutes * 60:
                break
            await asyncio.sleep(args.interval - (time.monotonic() - began) % args.interval)
        stop.set()
        await driver
    finally:
        stop.set()
        procs.stop()
        await prod.stop()
        if not args.keep and world.onboarded:
            say(f"cleaning up: the rows of the {len(world.onboarded)} tenants of the run ...")
            await _cleanup(settings, pools, world.onboarded)
        await close_pools(pools)

    fit = [(t, rss["pipeline"]) for t, rss, _ in samples
           if t >= args.warmup_minutes and rss["pipeline"] is not None]
    rows = []
    for name in PROCESSES:
        series = [(t, rss[name]) for t, rss, _ in samples
                  if t >= args.warmup_minutes and rss[name] is not None]
        slope, se, _ = linear_fit([t for t, _ in series], [m for _, m in series])
        first = [rss[name] for _, rss, _ in samples if rss[name] is not None]
        rows.append((name, first[0] if first else float("nan"),
                     min(m for _, m in series) if series else float("nan"),
                     max(m for _, m in series) if series else float("nan"),
                     series[-1][1] if series else float("nan"), slope, se))
    table(["process", "first MB", "min MB*", "max MB*", "last MB", "slope MB/min*", "+-"],
          rows, title=f"Resident memory over {samples[-1][0]:.1f} min, {world.sent:,} records "
                      f"sent ({world.sent / (samples[-1][0] * 60):,.0f}/s); * = after the first "
                      f"{args.warmup_minutes:g} min")
    slope, se, _ = linear_fit([t for t, _ in fit], [m for _, m in fit])
    window = fit[-1][0] - fit[0][0] if len(fit) > 1 else 0.0
    growing = slope - 2 * se > 0 and slope * window > 2.0
    print(f"pipeline worker: {slope:+.3f} +- {se:.3f} MB/min over {window:.1f} min "
          f"({slope * window:+.1f} MB) -> {'steady growth' if growing else 'no steady growth'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=1.0,
                        help="left out of the fit (imports, pools, caches filling)")
    parser.add_argument("--rate", type=float, default=400.0,
                        help="SimulatedWorld rate (it sends about 2.5x this many records/s)")
    parser.add_argument("--tenants", type=int, default=24)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the run's rows in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
