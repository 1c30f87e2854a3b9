"""What every agent of the pipeline shares: settings, clock, contract, stores, metrics.

Held by the faust app (``app.mdmbus``), opened on first use, so the module-level faust app
stays the only process-wide state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from mdmbus.clock import Clock
from mdmbus.contract import Registry, default_registry
from mdmbus.metrics import Metrics, serve
from mdmbus.regions import REGIONS
from mdmbus.services.rules.audit import RULES
from mdmbus.settings import Settings
from mdmbus.services.rules.residency import TenantDirectory
from mdmbus.services.stores.pools import Stores
from mdmbus.services.stores.retry import until_written

__all__ = ["PipelineContext"]


@dataclass
class PipelineContext:
    settings: Settings
    clock: Clock
    metrics: Metrics
    contract: Registry = field(default_factory=default_registry)
    stores: Stores | None = None
    directory: TenantDirectory | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(cls, settings: Settings) -> "PipelineContext":
        metrics = Metrics(CollectorRegistry()).prime(REGIONS + ("directory", "lifecycle"), RULES)
        serve(metrics, settings.metrics_port, settings.metrics_addr)
        return cls(settings=settings, clock=Clock.from_settings(settings), metrics=metrics)

    async def ready(self) -> "PipelineContext":
        """Opens the store pools once; concurrent agents wait for the first one."""
        if self.stores is None:
            async with self._lock:
                if self.stores is None:
                    stores = await until_written(
                        lambda: Stores(self.settings).start(max_size=6),
                        lambda exc: self.metrics.store_batches.labels("all", "error").inc())
                    self.directory = TenantDirectory(stores)
                    self.stores = stores
        return self
