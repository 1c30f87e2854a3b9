"""The commit protocol, in one place: a batch's offsets are committed only after every sink
that holds its effects has flushed (the region stores' transactions committed, its dead
letters stored and their notices acknowledged by the broker: mdmbus.streams.batch), and only
committed offsets are handed to the truncation (mdmbus.streams.transit, run by the runtime's
timer). So a crash at any point replays work that is idempotent, and never truncates a copy
that is not durable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Collection, Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from mdmbus.streams.classify import Message
from mdmbus.streams.transit import Truncator

__all__ = ["Checkpoint"]

log = logging.getLogger("mdmbus.commit")


@dataclass
class Checkpoint:
    """The partitions a batch read: the first offset of each (where a replay starts) and the
    next offset to read after it (what the commit stores)."""

    first: dict[TopicPartition, int] = field(default_factory=dict)
    next: dict[TopicPartition, int] = field(default_factory=dict)

    @classmethod
    def of(cls, messages: Iterable[Message]) -> "Checkpoint":
        cp = cls()
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            if tp not in cp.first:
                cp.first[tp] = m.offset
            cp.next[tp] = max(cp.next.get(tp, 0), m.offset + 1)
        return cp

    @classmethod
    def union(cls, checkpoints: Iterable["Checkpoint"]) -> "Checkpoint":
        """Consecutive batches' partitions as one (where a replay of them all starts)."""
        out = cls()
        for cp in checkpoints:
            out = out.merge(cp)
        return out

    def merge(self, other: "Checkpoint") -> "Checkpoint":
        """The union of two consecutive batches' partitions (where a replay of both starts)."""
        merged = Checkpoint(dict(other.first), dict(other.next))
        merged.first.update({tp: min(off, other.first.get(tp, off)) for tp, off in self.first.items()})
        merged.next.update({tp: max(off, other.next.get(tp, off)) for tp, off in self.next.items()})
        return merged

    async def commit(self, consumer: AIOKafkaConsumer, truncator: Truncator,
                     assigned: Collection[TopicPartition]) -> bool:
        """Commits the batch (call only when its effects are durable) and hands the committed
        offsets to the truncation. Partitions this consumer no longer owns are left to their
        new owner, which replays them (idempotently). Returns whether the commit was taken."""
        offsets = {tp: off for tp, off in self.next.items() if tp in assigned}
        if not offsets:
            return False
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:  # a rebalance took the partitions meanwhile
            log.warning("commit of %d partitions refused (%s); their new owner replays them",
                        len(offsets), exc)
            return False
        truncator.committed(offsets)
        return True
