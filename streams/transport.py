"""faust's Kafka transport and monitor, with two changes: the worker consumer's fetch wait,
and no per-event statistics nobody reads.

faust-streaming 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer, with no
setting to change it, so the subclass below sets the consumer's private ``_fetch_max_wait_ms``
after faust builds it (the one private attribute mdmbus touches, pinned with aiokafka). faust's
consumer reads the global lifecycle topic, quiet most of the time, beside the worker's other
internal work; aiokafka keeps one fetch in flight per broker
and leaves partitions with unconsumed records out of it, so a fetch holding only quiet
partitions parks for the full 1.5 s while the busy ones wait behind it. BENCHMARKS.md
(latency): p99 1.8 s at half the maximum rate with 1500 ms (first session), 0.12-0.18 s now.

faust's default Monitor sensor records four entries for every message and event (counters,
timestamps, a deque of run times) for faust's web views, which the pipeline does not serve (its
metrics come from prometheus-client). A faust agent that does nothing with its events used
116-138 us of CPU a record without them, 165-168 with them (BENCHMARKS.md, throughput:
``--noop-faust-monitor``).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["PipelineApp", "QuietMonitor", "FETCH_MAX_WAIT_MS"]

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


class QuietMonitor(Monitor):
    """faust's Monitor without its per-message and per-event bookkeeping (offset, commit and
    rebalance tracking stay, and the per-partition time of the last event, which faust's
    stall check reads)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # Kept: faust's stall check (aiokafka driver, verify_event_path) reads it, and would
        # report every busy partition as "not processing" without it.
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass


class PipelineApp(faust.App):
    """A faust App on the transport above (only for kafka:// brokers), with the quiet monitor."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", QuietMonitor)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
