"""What the pipeline's processors share: settings, clock, contract, metrics, the stores of the
regions this process serves, the directory cache, and a producer for dead-letter notices.

Built by :meth:`PipelineContext.create` from the process's entry point (nothing is built at
import time); :meth:`ready` opens the pools and the producer once, whoever asks first."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from mdmbus.clock import Clock
from mdmbus.connections import producer_options
from mdmbus.contract import Registry, default_registry
from mdmbus.crypto.keyring import FileKeyring, keyrings
from mdmbus.identities import principal_of
from mdmbus.metrics import Metrics
from mdmbus.services.rules.audit import RULES
from mdmbus.services.stores.directory import RegionCache
from mdmbus.services.stores.pools import Stores
from mdmbus.services.stores.retry import until_written
from mdmbus.settings import Settings

__all__ = ["PipelineContext"]


@dataclass
class PipelineContext:
    settings: Settings
    regions: tuple[str, ...]
    clock: Clock
    metrics: Metrics
    contract: Registry = field(default_factory=default_registry)
    #: The store pools and the directory cache over them, opened by ready().
    _opened: tuple[Stores, RegionCache] | None = None
    #: region -> a started AIOKafkaProducer on that region's cluster (dead-letter notices).
    producers: dict[str, Any] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(cls, settings: Settings, regions: tuple[str, ...],
               metrics: Metrics | None = None) -> "PipelineContext":
        metrics = metrics or Metrics(CollectorRegistry())
        metrics.prime(regions + ("directory", "lifecycle"), RULES)
        return cls(settings=settings, regions=regions, clock=Clock.from_settings(settings),
                   metrics=metrics)

    @property
    def stores(self) -> Stores:
        """The store pools: used before ready() opened them, an error that says so."""
        if self._opened is None:
            raise RuntimeError("the pipeline's stores are not open yet: await ready() first")
        return self._opened[0]

    @property
    def region_cache(self) -> RegionCache:
        """The directory cache: used before ready() opened it, an error that says so."""
        if self._opened is None:
            raise RuntimeError("the pipeline's directory cache is not open yet: await ready() first")
        return self._opened[1]

    async def ready(self) -> "PipelineContext":
        """Opens the store pools and the producers once; concurrent callers wait for the first."""
        if self._opened is None:
            async with self._lock:
                if self._opened is None:
                    name = f"mdmbus-pipeline-{'-'.join(self.regions)}"
                    stores = await until_written(
                        lambda: Stores(self.settings, name, "pipeline").start(self.regions,
                                                                              max_size=6),
                        lambda exc: self.metrics.store_batches.labels("all", "error").inc())
                    for region in self.regions:
                        self.producers[region] = await self._producer(region)
                    self._opened = (stores, RegionCache(stores.directory_pool))
        return self

    def keyring(self, region: str) -> FileKeyring:
        """The region's KEKs: the pipeline wraps every new body's data key under the current
        one (docs/design.md section 9)."""
        keyrings.configure(self.settings.keyring_path)
        return keyrings.get(region)

    async def _producer(self, region: str) -> Any:
        from aiokafka import AIOKafkaProducer
        producer = AIOKafkaProducer(**producer_options(
            self.settings, principal_of("pipeline", region), region, linger_ms=5))
        await producer.start()
        return producer

    async def close(self) -> None:
        for producer in self.producers.values():
            await producer.stop()
        self.producers.clear()
        if self._opened is not None:
            await self._opened[0].close()
            self._opened = None
