"""Rule 6 for the transit topics: once a batch is durable in its store and its offsets are
committed, the copies it consumed are made unreadable (Kafka's DeleteRecords advances each
partition's log start offset), at most every ``TRUNCATE_INTERVAL_S``, and never past the
lowest offset committed by any group that must still read the topic (``TopicSpec.readers``).

Kafka removes a truncated segment from disk once the next segment has started, and starts one
only when a record is appended. So once a partition has been wholly truncated and idle for the
topic's ``segment.ms``, the truncator appends a marker record (the key and header
``mdmbus.marker``, no value), which this pipeline skips, commits past and truncates: the old
segment is deleted at the broker's next retention check, within the topic's ``removed_s``
(mdmbus/topics.py). The marker is written as the pipeline, the one principal that reads these
topics: no other service needs a right to write into them (mdmbus/identities.py)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from mdmbus.metrics import Metrics
from mdmbus.topics import MARKER_HEADER, TRUNCATE_INTERVAL_S, group_name, parse_topic

__all__ = ["Truncator", "MARKER_KEY"]

#: The key of a marker record (Kafka clients need a key or a value; a marker carries no data).
MARKER_KEY = b"mdmbus.marker"

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
        #: Partition -> (end offset, since when it has been wholly truncated at that end).
        self._idle_since: dict[TopicPartition, tuple[int, float]] = {}
        #: Partition -> the end offset right after the last marker appended to it.
        self._marked_end: dict[TopicPartition, int] = {}

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The offsets this group has just committed (the next offset to read, per partition)."""
        for tp, offset in offsets.items():
            if parse_topic(tp.topic)[0].transit and offset > self._committed.get(tp, -1):
                self._committed[tp] = offset

    async def adopt(self, partitions) -> set[TopicPartition]:
        """Partitions just assigned to this consumer: what its group committed before (by this
        process before a restart, or by their previous owner before a rebalance) may not have
        been truncated yet, and no new commit may come if the partition stays idle; so the
        group's committed offsets are taken as this truncator's own.

        Returns the partitions the broker did not answer for, to adopt later: an OffsetFetch
        refused as a whole (the coordinator loading or moving) comes back from aiokafka as an
        empty answer, not as an error."""
        todo = [tp for tp in partitions if parse_topic(tp.topic)[0].transit]
        if not todo:
            return set()
        offsets = await self.admin.list_consumer_group_offsets(
            group_name(self.process, self.region), partitions=todo)
        self.committed({tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0})
        return set(todo) - set(offsets)

    def partitions(self) -> set[TopicPartition]:
        """Every partition this truncator holds state for."""
        return set(self._committed) | set(self._truncated) | set(self._idle_since) | \
            set(self._marked_end)

    def forget(self, partitions) -> None:
        """Partitions this consumer no longer owns: their new owner truncates them."""
        for tp in partitions:
            self._committed.pop(tp, None)
            self._truncated.pop(tp, None)
            self._idle_since.pop(tp, None)
            self._marked_end.pop(tp, None)

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

    async def roll_idle(self, producer: Any, end_of: Callable[[TopicPartition], int | None]
                        ) -> int:
        """Appends a marker to each partition wholly truncated (its end, as ``end_of`` knows
        it, equals its log start) and idle for its topic's ``segment.ms``; returns how many.
        A failed marker is retried at the next call."""
        now = time.monotonic()
        rolled = 0
        for tp, low in list(self._truncated.items()):
            end = end_of(tp)
            if end is None or end != low or self._marked_end.get(tp) == end:
                self._idle_since.pop(tp, None)
                continue
            seen = self._idle_since.get(tp)
            if seen is None or seen[0] != end:
                self._idle_since[tp] = (end, now)
                continue
            if now - seen[1] < int(parse_topic(tp.topic)[0].config["segment.ms"]) / 1000:
                continue
            try:
                meta = await producer.send_and_wait(tp.topic, value=None, key=MARKER_KEY,
                                                    partition=tp.partition,
                                                    headers=[(MARKER_HEADER, b"roll")])
            except KafkaError as exc:
                log.warning("marker for idle %s[%d] failed (%s); retried", tp.topic,
                            tp.partition, exc)
                continue
            self._marked_end[tp] = meta.offset + 1
            self._idle_since.pop(tp, None)
            rolled += 1
            log.info("rolled idle %s[%d] with a marker at %d", tp.topic, tp.partition,
                     meta.offset)
        return rolled
