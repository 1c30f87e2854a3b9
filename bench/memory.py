"""Process memory over a sustained run: the resident set of every mdmbus process, sampled.

    python -m bench.memory [--minutes 10] [--interval 5] [--rate 400] [--speed 100]

Starts the whole system as the demo does (through the one launcher, on a shared clock of
--speed): the pipeline, the sweeper and the gateway, each as one process for every region
(`--region all`), and the CM connector; and drives it with the demo's simulated world
(services.simulators.workload.SimulatedWorld: tenants onboarded in every region through the
lifecycle topic, their CM sides uploading through the gateways with their tokens, devices with
sessions, commands, relayed data and inventory cache on their region's topics, the connector
downloading relay records through the gateways, tenants that leave or ask for deletion, a
trickle of bad input; --rate is its knob, the records/s it actually sends are printed).
Every --interval seconds it prints the resident memory (VmRSS of /proc/PID/status) of each
process. At the end: a least-squares line through each process's samples after the first
--warmup-minutes, its slope in MB/min with its standard error; the same line through each
minute's lowest sample (the floor: every process gives freed heap back once a minute,
mdmbus/heap.py, so its resident set is a saw tooth and a line through all samples moves with
where the run stops on the last tooth); and a verdict for each process (the target is the
pipeline worker's): steady growth if the floor's slope is more than two standard errors above
0 and it rises more than 2 MB over the window. Everything of the run's tenants is deleted at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

from mdmbus.regions import REGIONS
from mdmbus.services.simulators.workload import SimulatedWorld
from mdmbus.settings import Settings
from mdmbus.stack import issuer
from bench.support import (check_stack, delete_tenants, launcher, linear_fit, open_stores,
                           parser as make_parser, point_pipeline_at, rss_mb, run_cli, say,
                           start_gateway, table)

__all__ = ["main"]

#: (process, region) in start order, as the demo starts them (mdmbus.cli.demo).
PROCESSES = (("pipeline", "all"), ("sweeper", "all"), ("gateway", "all"),
             ("cm-connector", None))


@dataclass
class _World(SimulatedWorld):
    """The demo's world, remembering every tenant it onboarded (to clean up after)."""

    onboarded: dict[str, str] = field(default_factory=dict)

    async def onboard(self):  # type: ignore[override]
        tenant = await super().onboard()
        self.onboarded[tenant.tenant_id] = tenant.region
        return tenant


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    await check_stack(settings)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"settings: {args.minutes:g} min, a sample every {args.interval:g} s, world rate "
          f"{args.rate:g}, {args.tenants} tenants, clock speed {args.speed:g}, "
          f"MDMBUS_BATCH_SIZE={settings.batch_size} MDMBUS_BATCH_WAIT={settings.batch_wait_s} s,"
          f" seed {seed}; processes: " + ", ".join(f"{n} --region {r}" if r else n
                                                  for n, r in PROCESSES))
    stores = await open_stores(settings, cm=True)
    for region in REGIONS:
        await point_pipeline_at(settings, region, worker_regions=REGIONS)
    tokens = settings.state_dir / "bench-logs" / f"cm-tokens-{uuid.uuid4().hex[:8]}"
    procs = launcher(settings, "memory", speed=args.speed, env={"MDMBUS_CM_TOKENS": str(tokens)})
    token_of = issuer(settings)
    world = _World(settings, procs.clock, lambda tenant, role: token_of.issue(tenant, role, 86400),
                   rate=args.rate, tenants=args.tenants, connector_tokens=tokens, seed=seed)
    stop = asyncio.Event()
    samples: list[tuple[float, dict[str, float | None]]] = []
    keys: dict[str, str] = {}
    try:
        for name, region in PROCESSES:
            if name == "gateway":
                keys[name] = await start_gateway(procs, settings, region)
            else:
                keys[name] = procs.start(name, region)
        say(f"processes started (logs in {procs.log_dir})")
        await world.start()
        driver = asyncio.create_task(world.run(stop))
        began = time.monotonic()
        print(f"\n{'min':>6} {'pipeline MB':>12} {'sweeper MB':>11} {'gateway MB':>11} "
              f"{'cm-conn MB':>11} {'to Kafka':>9} {'uploaded':>9} {'sent/s':>7}", flush=True)
        while True:
            elapsed = time.monotonic() - began
            procs.assert_alive()
            if driver.done():
                driver.result()  # raises what stopped it
                raise RuntimeError("the simulated world stopped")
            rss = {name: rss_mb(procs.procs[key].pid) for name, key in keys.items()}
            samples.append((elapsed / 60, rss))
            sent = world.sent + world.uploaded
            print(f"{elapsed / 60:6.2f} {rss['pipeline'] or 0:12.1f} {rss['sweeper'] or 0:11.1f}"
                  f" {rss['gateway'] or 0:11.1f} {rss['cm-connector'] or 0:11.1f} "
                  f"{world.sent:9,} {world.uploaded:9,} "
                  f"{sent / elapsed if elapsed else 0:7,.0f}", flush=True)
            if elapsed >= args.minutes * 60:
                break
            await asyncio.sleep(args.interval - (time.monotonic() - began) % args.interval)
        stop.set()
        await driver
    finally:
        stop.set()
        procs.stop()
        await world.close()
        if not args.keep and world.onboarded:
            say(f"cleaning up: the rows of the {len(world.onboarded)} tenants of the run ...")
            await delete_tenants(stores, world.onboarded)
        await stores.close()
        for path in tokens.glob("*"):
            path.unlink()
        if tokens.exists():
            tokens.rmdir()

    rows = []
    verdicts = {}
    for name in keys:
        series = [(t, rss[name]) for t, rss in samples
                  if t >= args.warmup_minutes and rss[name] is not None]
        slope, se, _ = linear_fit([t for t, _ in series], [m for _, m in series])
        first = [rss[name] for _, rss in samples if rss[name] is not None]
        floors = _floors(series)
        floor_slope, floor_se, _ = linear_fit([t for t, _ in floors], [m for _, m in floors])
        floor_window = floors[-1][0] - floors[0][0] if len(floors) > 1 else 0.0
        if len(floors) < 3:
            verdicts[name] = "too few minutes"
        else:
            growing = floor_slope - 2 * floor_se > 0 and floor_slope * floor_window > 2.0
            verdicts[name] = (f"{'steady growth' if growing else 'no steady growth'} (floor "
                              f"{floor_slope * floor_window:+.1f} MB over {floor_window:.1f} min)")
        rows.append((name, first[0] if first else float("nan"),
                     min(m for _, m in series) if series else float("nan"),
                     max(m for _, m in series) if series else float("nan"),
                     series[-1][1] if series else float("nan"), slope, se, floor_slope,
                     floor_se, verdicts[name]))
    minutes = samples[-1][0] if samples else 0.0
    sent = world.sent + world.uploaded
    table(["process", "first MB", "min MB*", "max MB*", "last MB", "slope MB/min*", "+-",
           "floor slope*", "+-", "verdict*"],
          rows, title=f"Resident memory over {minutes:.1f} min, {world.sent:,} records to Kafka "
                      f"and {world.uploaded:,} uploaded through the gateways "
                      f"({sent / max(1e-9, minutes * 60):,.0f}/s); * = after the first "
                      f"{args.warmup_minutes:g} min; floor = each minute's lowest sample; "
                      "steady growth = the floor's slope more than two standard errors above 0 "
                      "and more than 2 MB over the window")
    print(f"target, no steady growth of the pipeline worker: {verdicts.get('pipeline', '-')}")


def _floors(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each whole minute's lowest sample (time, MB), in order. A minute the samples do not
    cover from end to end (within one sampling step at each end: the run's last, partial
    minute) is left out: it may not hold a trim."""
    lowest: dict[int, tuple[float, float]] = {}
    span: dict[int, tuple[float, float]] = {}
    for t, mb in series:
        minute = int(t)
        if minute not in lowest or mb < lowest[minute][1]:
            lowest[minute] = (t, mb)
        first, _ = span.get(minute, (t, t))
        span[minute] = (first, t)
    step = max((b[0] - a[0] for a, b in zip(series, series[1:])), default=1.0) + 1e-9
    return [lowest[m] for m in sorted(lowest)
            if span[m][0] - m <= step and m + 1 - span[m][1] <= step]


def main() -> None:
    parser = make_parser("bench.memory", __doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=1.0,
                        help="left out of the fit (imports, pools, caches filling)")
    parser.add_argument("--rate", type=float, default=400.0,
                        help="SimulatedWorld rate (its knob; the records/s sent are printed)")
    parser.add_argument("--tenants", type=int, default=24)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the run's rows in place")
    run_cli(run, parser)


if __name__ == "__main__":
    main()
