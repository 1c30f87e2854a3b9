"""The one faust app of the pipeline, and the topics its agents read and write."""

from __future__ import annotations

import faust

from mdmbus import topics
from mdmbus.settings import Settings
from mdmbus.streams.context import PipelineContext
from mdmbus.streams.heap import TRIM_INTERVAL_S, heap_trimmer
from mdmbus.streams.transport import PipelineApp

__all__ = ["app", "context", "topic"]

settings = Settings.from_env()

app = PipelineApp(
    "mdmbus-pipeline",
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    web_enabled=False,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_interval=1.0,
    datadir=str(settings.state_dir / "faust"),
)
app.mdmbus = PipelineContext.create(settings)


def context() -> PipelineContext:
    return app.mdmbus


def topic(name: str) -> faust.TopicT:
    """A declared mdmbus topic as raw bytes (the codec, not faust, reads the values)."""
    topics.topic(name)  # unknown names fail here, not at the broker
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


dead_letters = topic(topics.DEAD_LETTER)


_trim = heap_trimmer()
if _trim is not None:
    @app.timer(interval=TRIM_INTERVAL_S)
    async def give_back_freed_heap() -> None:
        _trim()
