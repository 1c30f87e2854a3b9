"""Watches, from outside the pipeline, how long processed copies stay readable in a region's
transit topics (docs/design.md rule 6), measures its consumer lag, and rolls idle partitions.

Every few seconds, per transit partition: the log start offset (the first readable copy), the
end offset, and what the reader groups have committed. Copies below every reader's commit but
at or above the log start are processed yet readable; the watch remembers since when it has
seen each such range and reports the oldest age per topic
(``mdmbus_transit_readable_age_seconds``) and how many copies are readable past the topic's
bound (``mdmbus_transit_readable_past_bound``, which must read 0).

A partition whose copies are all truncated still keeps its last segment on disk until the
segment rolls, which Kafka does only when a record is appended. Once such a partition has been
idle for the topic's ``segment.ms``, the watch appends a marker record (the key
``mdmbus.marker``, no value, the header ``mdmbus.marker``); the pipeline skips it, commits past it and truncates it, and the old
segment is deleted at the broker's next retention check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from mdmbus.metrics import Metrics
from mdmbus.settings import Settings
from mdmbus.topics import MARKER_HEADER, group_name, regional_topics

__all__ = ["TransitWatch", "TransitState"]

log = logging.getLogger("mdmbus.transit")

#: The key of a marker record (Kafka clients need a key or a value; a marker carries no data).
MARKER_KEY = b"mdmbus.marker"


@dataclass
class TransitState:
    """What the last measurement found, per topic: the oldest processed-but-readable age (s)
    and the copies readable past the topic's bound."""

    age_s: dict[str, float] = field(default_factory=dict)
    past_bound: dict[str, int] = field(default_factory=dict)


class TransitWatch:
    def __init__(self, settings: Settings, region: str, metrics: Metrics, roll: bool = True) -> None:
        self.settings = settings
        #: Whether to append markers to idle partitions (the sweeper does; an observer not).
        self.roll = roll
        self.region = region
        self.metrics = metrics
        self.specs = {name: spec for name, spec in regional_topics(region)}
        self.transit = {name: spec for name, spec in self.specs.items() if spec.transit}
        self._pending_since: dict[TopicPartition, tuple[int, float]] = {}
        self._idle_since: dict[TopicPartition, tuple[int, float]] = {}
        self._marked_end: dict[TopicPartition, int] = {}
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> "TransitWatch":
        bootstrap = self.settings.kafka_bootstrap_of(self.region)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await self.admin.start()
        await self.consumer.start()
        if self.roll:
            self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await self.producer.start()
        return self

    async def close(self) -> None:
        for client, stop in ((self.producer, "stop"), (self.consumer, "stop"),
                             (self.admin, "close")):
            if client is not None:
                await getattr(client, stop)()

    async def _committed(self, groups: set[str], tps: list[TopicPartition]
                         ) -> dict[str, dict[TopicPartition, int]]:
        out = {}
        for group in groups:
            offsets = await self.admin.list_consumer_group_offsets(group, partitions=tps)
            out[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return out

    async def measure(self) -> TransitState:
        tps = [TopicPartition(name, p) for name, spec in self.specs.items()
               for p in range(spec.partitions)]
        starts = await self.consumer.beginning_offsets(tps)
        ends = await self.consumer.end_offsets(tps)
        groups = {group_name(reader, self.region) for spec in self.transit.values()
                  for reader in spec.readers}
        committed = await self._committed(groups, tps)
        self._lag(committed, ends)
        now = time.monotonic()
        state = TransitState({name: 0.0 for name in self.transit},
                             {name: 0 for name in self.transit})
        for tp in tps:
            spec = self.transit.get(tp.topic)
            if spec is None:
                continue
            readers = [committed.get(group_name(r, self.region), {}).get(tp, 0)
                       for r in spec.readers]
            done, start, end = min(readers), starts[tp], ends[tp]
            if done > start:  # processed copies still readable
                first_seen = self._pending_since.get(tp)
                if first_seen is None or first_seen[0] != start:
                    first_seen = self._pending_since[tp] = (start, now)
                age = now - first_seen[1]
                state.age_s[tp.topic] = max(state.age_s[tp.topic], age)
                if age > spec.unreadable_s:
                    state.past_bound[tp.topic] += done - start
            else:
                self._pending_since.pop(tp, None)
            if self.roll:
                await self._roll_if_idle(tp, spec, start, end, now)
        for topic, age in state.age_s.items():
            self.metrics.transit_readable_age.labels(topic).set(age)
            self.metrics.transit_readable_past_bound.labels(topic).set(state.past_bound[topic])
        return state

    def _lag(self, committed: dict[str, dict[TopicPartition, int]],
             ends: dict[TopicPartition, int]) -> None:
        for group, offsets in committed.items():
            for tp, offset in offsets.items():
                self.metrics.consumer_lag.labels(group, tp.topic, str(tp.partition)).set(
                    max(0, ends[tp] - offset))

    async def _roll_if_idle(self, tp: TopicPartition, spec, start: int, end: int,
                            now: float) -> None:
        if end == 0 or start < end or self._marked_end.get(tp) == end:
            self._idle_since.pop(tp, None)
            return
        seen = self._idle_since.get(tp)
        if seen is None or seen[0] != end:
            self._idle_since[tp] = (end, now)
            return
        if now - seen[1] < int(spec.config["segment.ms"]) / 1000:
            return
        meta = await self.producer.send_and_wait(tp.topic, value=None, key=MARKER_KEY,
                                                 partition=tp.partition,
                                                 headers=[(MARKER_HEADER, b"roll")])
        self._marked_end[tp] = meta.offset + 1
        self._idle_since.pop(tp, None)
        log.info("rolled idle %s[%d] with a marker at %d", tp.topic, tp.partition, meta.offset)
