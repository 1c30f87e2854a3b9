"""The pipeline worker, built by a factory from the process's settings (nothing at import
time): a faust app that owns the process, its lifecycle and timers and runs the low-volume
lifecycle agent, and one record runtime per region it serves (mdmbus.streams.runtime)."""

from __future__ import annotations

import functools
import logging
from typing import Sequence

import faust
from mode import Service

from mdmbus.connections import faust_credentials
from mdmbus.identities import principal_of
from mdmbus.services.stores.retry import until_written
from mdmbus.settings import Settings
from mdmbus.streams.batch import BatchTemplate
from mdmbus.streams.context import PipelineContext
from mdmbus.heap import TRIM_INTERVAL_S, heap_trimmer
from mdmbus.streams.lifecycle import lifecycle_processor
from mdmbus.streams.runtime import RegionRuntime
from mdmbus.streams.transport import PipelineApp
from mdmbus.topics import TopicKind, topic_name

__all__ = ["build_app", "build_worker", "lifecycle_app_id"]

log = logging.getLogger("mdmbus.pipeline")


def lifecycle_app_id(regions: Sequence[str]) -> str:
    """The faust app id, which is the lifecycle agent's consumer group: one per set of regions,
    so every region's pipeline reads every lifecycle event."""
    return f"mdmbus-{'-'.join(regions)}-lifecycle"


def build_app(ctx: PipelineContext) -> faust.App:
    """The faust app of a worker serving ``ctx.regions``."""
    s = ctx.settings
    datadir = s.state_dir / "faust" / lifecycle_app_id(ctx.regions)
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    app = PipelineApp(
        lifecycle_app_id(ctx.regions),
        broker=f"kafka://{s.kafka_bootstrap}",
        # As the first region's pipeline: its group prefix covers this app's group id.
        broker_credentials=faust_credentials(s, principal_of("pipeline", ctx.regions[0])),
        store="memory://",
        web_enabled=False,
        # faust's leader-election topic is for tables and agents that need one leader; this
        # worker has neither, and without it the worker needs no right to create topics.
        topic_disable_leader=True,
        topic_allow_declare=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Follows partitions to new leaders within seconds of a broker's loss, as every other
        # client (mdmbus/connections.py).
        consumer_metadata_max_age_ms=int(s.kafka_metadata_max_age_s * 1000),
        producer_metadata_max_age_ms=int(s.kafka_metadata_max_age_s * 1000),
        broker_commit_interval=1.0,
        datadir=str(datadir),
    )
    lifecycle = app.topic(topic_name(TopicKind.TENANT_LIFECYCLE), key_type=bytes,
                          value_type=bytes, key_serializer="raw", value_serializer="raw")
    template = BatchTemplate(ctx, {TopicKind.TENANT_LIFECYCLE: lifecycle_processor()})

    async def lifecycle_agent(stream) -> None:
        """Lifecycle events in batches through the template; faust acknowledges a batch's
        offsets when this returns, so a store outage is waited out here (low volume)."""
        async for events in stream.take_events(s.batch_size, within=s.batch_wait_s):
            prepared = template.prepare([event.message for event in events])
            await until_written(functools.partial(template.process, prepared),
                                lambda exc: ctx.metrics.store_batches.labels("lifecycle",
                                                                             "error").inc())

    app.agent(lifecycle, name="lifecycle")(lifecycle_agent)

    trim = heap_trimmer()
    if trim is not None:
        async def give_back_freed_heap() -> None:
            trim()
        app.timer(interval=TRIM_INTERVAL_S)(give_back_freed_heap)
    return app


class _Context(Service):
    """Closes the context's pools and producers when the worker stops (after the runtimes,
    which are stopped first: services stop in the reverse order of their start)."""

    def __init__(self, ctx: PipelineContext, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx

    async def on_start(self) -> None:
        await self.ctx.ready()

    async def on_stop(self) -> None:
        await self.ctx.close()


def build_worker(settings: Settings, regions: Sequence[str],
                 ctx: PipelineContext | None = None) -> faust.Worker:
    """The worker of ``mdmbus process pipeline --region ...``: the app and a record runtime per
    region, started and stopped together."""
    ctx = ctx or PipelineContext.create(settings, tuple(regions))
    app = build_app(ctx)
    runtimes = [RegionRuntime(ctx, region) for region in ctx.regions]
    return _Worker(app, _Context(ctx), *runtimes, loglevel="info", quiet=True)


class _Worker(faust.Worker):
    """faust's worker, leaving the process's title alone: faust would rename the process
    "[Faust:Worker] ...", and an operator's `ps` or `pkill -f 'mdmbus process pipeline'`
    would no longer find it."""

    def _setproctitle(self, info: str, **kwargs: object) -> None:
        pass
