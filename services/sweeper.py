"""The sweeper: deletes what is past its deadline in every region store, and measures what is
left past it (which must be nothing), the tenants by state and the consumer lag.

Runs every MDMBUS_SWEEP_INTERVAL real seconds: expired commands and sessions (rule 3), then due
tenant purges (rule 4). Each delete is bounded (MDMBUS_SWEEP_BATCH rows) and walks the deadline
index, so a sweep costs what it deletes, not the size of the table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from mdmbus.clock import Clock
from mdmbus.metrics import Metrics, serve
from mdmbus.regions import REGIONS
from mdmbus.settings import Settings
from mdmbus.services.rules.audit import RULES, Deletion
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.rules.retention import sweep_due_purges
from mdmbus.services.consumer_lag import measure_consumer_lag
from mdmbus.services.rules.session_expiry import sweep_expired
from mdmbus.services.stores.pools import Stores
from mdmbus.services.stores.retry import STORE_ERRORS, until_written

__all__ = ["Sweeper", "run", "PAST_DEADLINE_TOLERANCE_S"]

log = logging.getLogger("mdmbus.sweeper")

#: A row counts as "past its deadline" once it has outlived it by this many real seconds: the
#: sweep interval plus a margin. The gauge of such rows must read 0.
PAST_DEADLINE_TOLERANCE_S = 5.0


class Sweeper:
    def __init__(self, settings: Settings, stores: Stores, metrics: Metrics,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.stores = stores
        self.metrics = metrics
        self.clock = clock or Clock.from_settings(settings)

    def _real_lag(self, deadline: dt.datetime) -> float:
        return max(0.0, self.clock.to_real_seconds(self.clock.now() - deadline.timestamp()))

    async def sweep_once(self) -> list[Deletion]:
        """One pass over every region; returns what it deleted."""
        deleted: list[Deletion] = []
        batch = self.settings.sweep_batch
        for region in REGIONS:
            async with self.stores.region(region).acquire() as conn:
                while True:
                    got = await sweep_expired(conn, region, self.clock.now_dt(), batch,
                                              self._real_lag)
                    deleted += got
                    if sum(d.count for d in got) < batch:
                        break
                purged, _ = await sweep_due_purges(conn, region, self.clock.now_dt(), batch,
                                                   self._real_lag)
                deleted += purged
        self.metrics.count_deletions(deleted)
        return deleted

    async def measure(self) -> dict[tuple[str, str], int]:
        """Rows past deadline + tolerance, and tenants and rows by state: the compliance gauges."""
        tolerance = dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * self.clock.speed)
        late = self.clock.now_dt() - tolerance
        counts: dict[tuple[str, str], int] = {}
        for region in REGIONS:
            pool = self.stores.region(region)
            for rule, count in (await rows_past_deadline(pool, late)).items():
                counts[(region, rule)] = count
                self.metrics.rows_past_deadline.labels(region, rule).set(count)
            for state in ("active", "retention"):
                self.metrics.tenants.labels(region, state).set(0)
            for row in await pool.fetch("SELECT state, count(*) AS n FROM tenants GROUP BY state"):
                self.metrics.tenants.labels(region, row["state"]).set(row["n"])
            for category in ("upload", "relay", "inventory_cache", "command"):
                self.metrics.stored_rows.labels(region, category).set(0)
            for row in await pool.fetch("SELECT category, count(*) AS n FROM records"
                                        " WHERE body IS NOT NULL GROUP BY category"):
                self.metrics.stored_rows.labels(region, row["category"]).set(row["n"])
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        measured_at = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.sweep_once()
                if loop.time() - measured_at > 2.0:
                    await self.measure()
                    await measure_consumer_lag(self.settings, self.metrics)
                    measured_at = loop.time()
            except STORE_ERRORS + (KafkaError,) as exc:
                log.warning("sweep or measurement failed (%s); retrying", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.settings.sweep_interval_s)
            except asyncio.TimeoutError:
                pass


async def run(settings: Settings, stop: asyncio.Event) -> None:
    metrics = Metrics(CollectorRegistry()).prime(("all",), RULES)
    serve(metrics, settings.metrics_port, settings.metrics_addr)
    stores = await until_written(lambda: Stores(settings).start(),
                                 lambda exc: metrics.store_batches.labels("all", "error").inc())
    try:
        await Sweeper(settings, stores, metrics).run(stop)
    finally:
        await stores.close()
