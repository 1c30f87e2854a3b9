"""Rule 6 for the transit topics: once a batch is durable in its store and its offsets are
committed, the copies it consumed are made unreadable (Kafka's DeleteRecords advances each
partition's log start offset), at most every ``TRUNCATE_INTERVAL_S``, and never past the
lowest offset committed by any group that must still read the topic (``TopicSpec.readers``).

Kafka removes a truncated segment from disk once the next segment has started; an idle
partition's segment is rolled by a marker record (services/sweeper.py), so the copies are
gone from disk within the topic's ``removed_s`` too (mdmbus/topics.py)."""

from __future__ import annotations

import logging
import time
from typing import Mapping

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from mdmbus.metrics import Metrics
from mdmbus.topics import TRUNCATE_INTERVAL_S, group_name, parse_topic

__all__ = ["Truncator"]

log = logging.getLogger("mdmbus.transit")


class Truncator:
    """Truncates what one consumer group of one region has committed."""

    def __init__(self, admin: AIOKafkaAdminClient, process: str, region: str, metrics: Metrics,
                 interval_s: float = TRUNCATE_INTERVAL_S) -> None:
        self.admin = admin
        self.process = process
        self.region = region
        self.metrics = metrics
        self.interval_s = interval_s
        self._committed: dict[TopicPartition, int] = {}
        self._truncated: dict[TopicPartition, int] = {}
        self._last = 0.0

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The offsets this group has just committed (the next offset to read, per partition)."""
        for tp, offset in offsets.items():
            if parse_topic(tp.topic)[0].transit and offset > self._committed.get(tp, -1):
                self._committed[tp] = offset

    def forget(self, partitions) -> None:
        """Partitions this consumer no longer owns: their new owner truncates them."""
        for tp in partitions:
            self._committed.pop(tp, None)
            self._truncated.pop(tp, None)

    async def _safe(self, todo: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """``todo`` lowered to what every other reader group has committed."""
        others = {p for tp in todo for p in parse_topic(tp.topic)[0].readers} - {self.process}
        for process in sorted(others):
            theirs = await self.admin.list_consumer_group_offsets(
                group_name(process, self.region), partitions=list(todo))
            for tp in list(todo):
                meta = theirs.get(tp)
                todo[tp] = min(todo[tp], meta.offset if meta is not None and meta.offset >= 0 else 0)
        return {tp: off for tp, off in todo.items() if off > self._truncated.get(tp, -1)}

    async def truncate(self, force: bool = False) -> int:
        """Truncates the committed partitions if the interval has passed (or ``force``);
        returns how many partitions were truncated. Failures are logged and retried later:
        a copy not truncated now is truncated at the next call."""
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return 0
        self._last = now
        todo = {tp: off for tp, off in self._committed.items()
                if off > self._truncated.get(tp, -1)}
        if not todo:
            return 0
        try:
            safe = await self._safe(todo)
            if not safe:
                return 0
            done = await self.admin.delete_records(
                {tp: RecordsToDelete(before_offset=off) for tp, off in safe.items()},
                timeout_ms=10_000)
        except KafkaError as exc:
            log.warning("truncating %d partitions failed (%s); retried in %.0f s", len(todo),
                        exc, self.interval_s)
            return 0
        for tp, low in done.items():
            self._truncated[tp] = low
            self.metrics.transit_truncations.labels(tp.topic).inc()
        return len(done)
