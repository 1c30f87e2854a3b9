"""The sweeper of a region: deletes what is past its deadline (commands and sessions, rows of
tenants in retention, dead letters), purges tenants whose 90 + 30 days are over, and measures
what is left past a deadline (which must be nothing), the tenants by state, the rows held, the
consumer lag and how long processed copies stay readable in the region's transit topics.

Runs every MDMBUS_SWEEP_INTERVAL real seconds. Each delete is bounded (MDMBUS_SWEEP_BATCH rows)
and walks the deadline indexes, so a sweep costs what it deletes, not the size of the tables.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Sequence

from aiokafka.errors import KafkaError

from mdmbus.categories import RECORD_CATEGORIES
from mdmbus.clock import Clock
from mdmbus.crypto.keyring import KeyUnavailable
from mdmbus.metrics import Metrics
from mdmbus.services.rules.audit import Deletion
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.rules.delete_after_download import pending_summary
from mdmbus.services.rules.retention import sweep_due_purges
from mdmbus.services.rotation import Rotation
from mdmbus.services.stores.expiry import sweep_deadlines
from mdmbus.services.stores.pools import Stores
from mdmbus.services.stores.retry import STORE_ERRORS, check_outage
from mdmbus.services.transit_watch import TransitState, TransitWatch
from mdmbus.settings import Settings

__all__ = ["Sweeper", "run", "PAST_DEADLINE_TOLERANCE_S"]

log = logging.getLogger("mdmbus.sweeper")

#: A row counts as "past its deadline" once it has outlived it by this many real seconds: the
#: sweep interval plus a margin. The gauge of such rows must read 0.
PAST_DEADLINE_TOLERANCE_S = 5.0
#: How often the gauges are measured (real seconds).
MEASURE_INTERVAL_S = 2.0


class Sweeper:
    def __init__(self, settings: Settings, stores: Stores, regions: Sequence[str],
                 metrics: Metrics, clock: Clock | None = None,
                 watches: Sequence[TransitWatch] = (), rotation: Rotation | None = None) -> None:
        self.settings = settings
        #: The regions' KEK rotation (docs/design.md section 9); None: not this sweeper's job.
        self.rotation = rotation
        self.stores = stores
        self.regions = tuple(regions)
        self.metrics = metrics
        self.clock = clock or Clock.from_settings(settings)
        self.watches = list(watches)

    def _real_lag(self, deadline: dt.datetime) -> float:
        return max(0.0, self.clock.to_real_seconds(self.clock.now() - deadline.timestamp()))

    async def sweep_once(self) -> list[Deletion]:
        """One pass over every region; returns what it deleted."""
        deleted: list[Deletion] = []
        batch = self.settings.sweep_batch
        for region in self.regions:
            async with self.stores.region(region).acquire() as conn:
                while True:
                    got = await sweep_deadlines(conn, region, self.clock.now_dt(), batch,
                                                self._real_lag)
                    deleted += got
                    if sum(d.count for d in got) < batch:
                        break
            deleted += await sweep_due_purges(self.stores, region, self.clock.now_dt(), batch,
                                              self._real_lag)
        self.metrics.count_deletions(deleted)
        return deleted

    async def measure(self) -> dict[tuple[str, str], int]:
        """Rows past deadline + tolerance, and tenants and rows by state: the compliance gauges."""
        tolerance = dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * self.clock.speed)
        late = self.clock.now_dt() - tolerance
        counts: dict[tuple[str, str], int] = {}
        for region in self.regions:
            pool = self.stores.region(region)
            for rule, count in (await rows_past_deadline(pool, late)).items():
                counts[(region, rule)] = count
                self.metrics.rows_past_deadline.labels(region, rule).set(count)
            for state in ("active", "retention"):
                self.metrics.tenants.labels(region, state).set(0)
            for row in await pool.fetch("SELECT state, count(*) AS n FROM tenants GROUP BY state"):
                self.metrics.tenants.labels(region, row["state"]).set(row["n"])
            for category in RECORD_CATEGORIES:
                self.metrics.stored_rows.labels(region, category).set(0)
            for row in await pool.fetch("SELECT category, count(*) AS n FROM records"
                                        " WHERE has_body GROUP BY category"):
                self.metrics.stored_rows.labels(region, row["category"]).set(row["n"])
            self.metrics.stored_rows.labels(region, "dead_letter").set(await pool.fetchval(
                "SELECT count(*) FROM dead_letters WHERE body_kept"))
            if self.rotation is not None:
                await self.rotation.measure(region)
            pending, oldest = await pending_summary(pool)
            self.metrics.relay_pending.labels(region).set(pending)
            self.metrics.relay_pending_oldest_seconds.labels(region).set(
                0 if oldest is None else
                (dt.datetime.now(dt.timezone.utc) - oldest).total_seconds())
        return counts

    async def measure_transit(self) -> list[TransitState]:
        return [await watch.measure() for watch in self.watches]

    async def run(self, stop: asyncio.Event) -> None:
        measured_at = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.sweep_once()
            except STORE_ERRORS as exc:
                check_outage(exc)
                log.warning("sweep failed (%s); retrying", exc)
            if self.rotation is not None:
                for region in self.regions:
                    try:
                        await self.rotation.step(region)
                    except STORE_ERRORS + (KeyUnavailable,) as exc:
                        log.warning("KEK rotation of %s failed (%s); retrying", region, exc)
            if loop.time() - measured_at > MEASURE_INTERVAL_S:
                measured_at = loop.time()
                try:
                    await self.measure()
                    await self.measure_transit()
                except STORE_ERRORS + (KafkaError,) as exc:
                    check_outage(exc)
                    log.warning("measurement failed (%s); retrying", exc)
                except Exception:  # a fault in a gauge must not stop the deletions
                    log.exception("measurement failed")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.sweep_interval_s)
            except asyncio.TimeoutError:
                pass


async def run(settings: Settings, regions: Sequence[str], stop: asyncio.Event,
              metrics: Metrics) -> None:
    from mdmbus.services.rules.audit import RULES
    from mdmbus.services.stores.retry import until_written
    metrics.prime(tuple(regions), RULES)
    stores = await until_written(
        lambda: Stores(settings, f"mdmbus-sweeper-{'-'.join(regions)}", "sweeper").start(regions),
        lambda exc: metrics.store_batches.labels("all", "error").inc())
    watches = [await TransitWatch(settings, region, metrics).start() for region in regions]
    try:
        rotation = Rotation(settings, {r: stores.region(r) for r in regions}, metrics)
        await Sweeper(settings, stores, regions, metrics, watches=watches,
                      rotation=rotation).run(stop)
    finally:
        for watch in watches:
            await watch.close()
        await stores.close()
