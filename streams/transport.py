"""faust's Kafka transport with one change: the worker consumer's fetch wait.

faust-streaming 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. The
pipeline reads six topics, most of them quiet; aiokafka keeps one fetch in flight per broker
and leaves partitions with unconsumed records out of it, so a fetch holding only quiet
partitions parks for the full 1.5 s while the busy ones wait behind it. Measured in
BENCHMARKS.md (latency): p99 1.8 s at 2,600 records/s with 1500 ms, 0.3 s with 100 ms.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["PipelineApp", "FETCH_MAX_WAIT_MS"]

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts its fetcher (aiokafka 0.14, pinned).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class PipelineApp(faust.App):
    """A faust App on the transport above (only for kafka:// brokers)."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
