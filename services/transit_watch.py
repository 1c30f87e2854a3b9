"""Watches, from outside the pipeline, how long processed copies stay readable in a region's
transit topics (docs/design.md rule 6) and measures its consumer lag. It only describes: the
sweeper's principal may read no record and write none (mdmbus/identities.py).

Every few seconds, per transit partition: the log start offset (the first readable copy), the
end offset, and what the reader groups have committed. Copies below every reader's commit but
at or above the log start are processed yet readable; the watch remembers since when it has
seen each such range and reports the oldest age per topic
(``mdmbus_transit_readable_age_seconds``) and how many copies are readable past the topic's
bound (``mdmbus_transit_readable_past_bound``, which must read 0).

"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from mdmbus.connections import kafka_options
from mdmbus.identities import principal_of
from mdmbus.metrics import Metrics
from mdmbus.settings import Settings
from mdmbus.topics import group_name, regional_topics

__all__ = ["TransitWatch", "TransitState"]

log = logging.getLogger("mdmbus.transit")

@dataclass
class TransitState:
    """What the last measurement found, per topic: the oldest processed-but-readable age (s)
    and the copies readable past the topic's bound."""

    age_s: dict[str, float] = field(default_factory=dict)
    past_bound: dict[str, int] = field(default_factory=dict)


class TransitWatch:
    def __init__(self, settings: Settings, region: str, metrics: Metrics) -> None:
        self.settings = settings
        self.region = region
        self.metrics = metrics
        self.specs = {name: spec for name, spec in regional_topics(region)}
        self.transit = {name: spec for name, spec in self.specs.items() if spec.transit}
        self._pending_since: dict[TopicPartition, tuple[int, float]] = {}
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> "TransitWatch":
        # As the region's sweeper: it may describe the region's topics and groups, never read
        # or write a record (mdmbus/identities.py).
        options = kafka_options(self.settings, principal_of("sweeper", self.region), self.region)
        self.admin = AIOKafkaAdminClient(**options)
        self.consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
        await self.admin.start()
        await self.consumer.start()
        return self

    def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self.admin is None or self.consumer is None:
            raise RuntimeError(f"the transit watch of {self.region} is not started")
        return self.admin, self.consumer

    async def close(self) -> None:
        for client, stop in ((self.consumer, "stop"), (self.admin, "close")):
            if client is not None:
                await getattr(client, stop)()

    async def _committed(self, groups: set[str], tps: list[TopicPartition]
                         ) -> dict[str, dict[TopicPartition, int]]:
        admin, _ = self._clients()
        out = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
            out[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        return out

    async def measure(self) -> TransitState:
        tps = [TopicPartition(name, p) for name, spec in self.specs.items()
               for p in range(spec.partitions)]
        _, consumer = self._clients()
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
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
            done, start = min(readers), starts[tp]
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
