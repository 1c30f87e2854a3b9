"""Adopting a group's earlier commits (mdmbus.streams.transit.Truncator.adopt, driven by
RegionRuntime.truncate), with a fake admin and consumer: a partition the broker did not answer
for is adopted later, and a revocation in the middle of a truncation round leaves the revoked
partition to its new owner instead of crashing the timer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from mdmbus.metrics import Metrics
from mdmbus.settings import Settings
from mdmbus.streams.runtime import RegionRuntime
from mdmbus.streams.transit import Truncator
from mdmbus.topics import TopicKind, topic_name

UPLOAD = topic_name(TopicKind.UPLOAD, "eu")
A, B = TopicPartition(UPLOAD, 0), TopicPartition(UPLOAD, 1)


@dataclass
class Meta:
    offset: int


class FakeAdmin:
    """Answers OffsetFetch with ``answer`` (partitions missing: not answered), after
    ``before_answer`` has run (a rebalance arriving meanwhile); records DeleteRecords."""

    def __init__(self, answer: dict[TopicPartition, int], before_answer=None) -> None:
        self.answer, self.before_answer = answer, before_answer
        self.deleted: dict[TopicPartition, int] = {}

    async def list_consumer_group_offsets(self, group, partitions):
        if self.before_answer is not None:
            await self.before_answer()
        return {tp: Meta(off) for tp, off in self.answer.items() if tp in partitions}

    async def delete_records(self, records, timeout_ms):
        done = {tp: r.before_offset for tp, r in records.items()}
        self.deleted.update(done)
        return done


class FakeConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def highwater(self, tp: TopicPartition) -> int:
        assert tp in self.assigned, "Partition is not assigned"  # as aiokafka does
        return 0


class FakeProducer:
    async def send_and_wait(self, *a, **kw):
        raise AssertionError("no marker expected")


class FakeCtx:
    def __init__(self) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.settings = Settings(kafka_security="plaintext")
        self.producers = {"eu": FakeProducer()}


def _runtime(admin: FakeAdmin, assigned: set[TopicPartition]) -> RegionRuntime:
    ctx = FakeCtx()
    runtime = RegionRuntime(ctx, "eu")
    runtime._consumer = FakeConsumer(assigned)
    runtime._truncator = Truncator(admin, "pipeline", "eu", ctx.metrics)
    runtime.assigned(assigned)
    return runtime


async def test_partitions_the_broker_did_not_answer_for_are_adopted_at_the_next_round():
    admin = FakeAdmin({A: 7})  # B missing: an OffsetFetch refused for it
    runtime = _runtime(admin, {A, B})
    await runtime.truncate()
    assert admin.deleted == {A: 7}
    assert runtime._adopt == {B}, "B is to be adopted again, not forgotten"
    admin.answer = {A: 7, B: 4}
    await runtime.truncate()
    assert admin.deleted == {A: 7, B: 4}
    assert runtime._adopt == set()


async def test_an_empty_answer_adopts_nothing_and_keeps_every_partition_to_adopt():
    admin = FakeAdmin({})
    runtime = _runtime(admin, {A, B})
    await runtime.truncate()
    assert admin.deleted == {}
    assert runtime._adopt == {A, B}


async def test_a_revocation_during_the_round_leaves_the_partition_to_its_new_owner():
    runtime: RegionRuntime

    async def rebalance() -> None:  # B goes to another worker while the offsets are read
        runtime.consumer.assigned.discard(B)
        await runtime.revoked({B})
    admin = FakeAdmin({A: 5, B: 9}, before_answer=rebalance)
    runtime = _runtime(admin, {A, B})
    await asyncio.wait_for(runtime.truncate(), 5)  # raised "not assigned" before
    assert admin.deleted == {A: 5}, "a revoked partition is its new owner's to truncate"
    assert B not in runtime.truncator.partitions()
