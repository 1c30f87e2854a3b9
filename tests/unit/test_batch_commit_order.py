"""The commit protocol with fake sinks: a batch's offsets are committed only after every
region's write has finished and every dead letter of the batch was accepted; a failing write
or dead letter means no commit at all (the runtime backs off and replays the batch).

The record runtime (mdmbus.streams.runtime.RegionRuntime) is driven through its own ``_write``
step, with the real batch template, classifier and Checkpoint; the stores, the dead-letter
sink and the consumer are fakes that log what happens, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from mdmbus.contract import default_registry
from mdmbus.metrics import Metrics
from mdmbus.producer import prepare_record
from mdmbus.settings import Settings
from mdmbus.streams import batch as batch_module
from mdmbus.streams.batch import BatchTemplate, Processor, Written
from mdmbus.streams.commit import Checkpoint
from mdmbus.streams.runtime import STALE, STORE_DOWN, WRITTEN, RegionRuntime
from mdmbus.streams.transit import Truncator
from mdmbus.topics import TopicKind, topic_name
from tests.unit.examples import example

REGISTRY = default_registry()


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


class FakeCtx:
    """What the template asks of a PipelineContext, without servers."""

    def __init__(self) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.contract = REGISTRY
        self.settings = Settings(kafka_security="plaintext")

    async def ready(self) -> "FakeCtx":
        return self


@dataclass
class Journal:
    events: list[str] = field(default_factory=list)
    #: region -> how many event-loop turns its write takes (a slow region finishes last)
    delays: dict[str, int] = field(default_factory=dict)
    fail_write: str | None = None
    fail_dead_letters: bool = False


class FakeConsumer:
    def __init__(self, journal: Journal, assigned: set[TopicPartition]) -> None:
        self.journal, self.assigned = journal, assigned
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets) -> None:
        self.journal.events.append("commit")
        self.committed.update(offsets)


def _messages(region_counts: dict[str, int], garbage: int) -> list[Msg]:
    """Valid U12 uploads on each region's upload topic, plus undecodable messages (dead
    letters) on the first region's."""
    out = []
    for region, count in region_counts.items():
        for _i in range(count):
            record = example("U12")
            produced = prepare_record("U12", record, REGISTRY)
            out.append(Msg(topic_name(TopicKind.UPLOAD, region), 0, len(out), produced.key,
                           produced.value))
    first = next(iter(region_counts))
    for _ in range(garbage):
        out.append(Msg(topic_name(TopicKind.UPLOAD, first), 0, len(out), b"k", b"\x00garbage"))
    return out


def _runtime(journal: Journal, monkeypatch, messages: list[Msg]) -> tuple[RegionRuntime,
                                                                           FakeConsumer]:
    async def route(ctx, items):
        routed: dict[str | None, list] = {}
        for a in items:
            routed.setdefault(a.region, []).append(a)
        return routed, []

    async def write(ctx, region, items):
        journal.events.append(f"write {region} start")
        for _ in range(journal.delays.get(region, 0)):
            await asyncio.sleep(0)
        if journal.fail_write == region:
            journal.events.append(f"write {region} failed")
            raise asyncpg.exceptions.CannotConnectNowError("the store is restarting")
        journal.events.append(f"write {region} done")
        return Written()

    async def record_refusals(ctx, rejected):
        journal.events.append(f"dead letters {len(rejected)} start")
        await asyncio.sleep(0)
        if journal.fail_dead_letters:
            raise asyncpg.exceptions.CannotConnectNowError("the store is restarting")
        journal.events.append(f"dead letters {len(rejected)} done")

    monkeypatch.setattr(batch_module, "record_refusals", record_refusals)
    ctx = FakeCtx()
    runtime = RegionRuntime(ctx, "eu")
    runtime.template = BatchTemplate(ctx, {TopicKind.UPLOAD: Processor(route, write)})
    consumer = FakeConsumer(journal, {TopicPartition(m.topic, m.partition) for m in messages})
    runtime._consumer = consumer
    runtime._truncator = Truncator(None, "pipeline", "eu", ctx.metrics)
    return runtime, consumer


async def test_the_commit_comes_after_every_regions_write_and_every_dead_letter(monkeypatch):
    journal = Journal(delays={"na": 5, "eu": 0, "ap": 2})
    messages = _messages({"na": 3, "eu": 2, "ap": 4}, garbage=2)
    runtime, consumer = _runtime(journal, monkeypatch, messages)
    prepared = runtime.template.prepare(messages)
    assert len(prepared.accepted) == 9 and len(prepared.rejected) == 2

    assert await runtime._write(prepared, Checkpoint.of(messages)) == WRITTEN

    events = journal.events
    assert events.count("commit") == 1, events
    commit = events.index("commit")
    for region in ("na", "eu", "ap"):
        assert events.index(f"write {region} done") < commit, events
    assert events.index("dead letters 2 done") < commit, events
    # the regions were written side by side: every write started before the slowest finished
    assert max(events.index(f"write {r} start") for r in ("na", "eu", "ap")) \
        < events.index("write na done"), events
    # the next offset after the batch, on every partition it read
    assert consumer.committed == {TopicPartition(m.topic, m.partition): m.offset + 1
                                  for m in messages}
    # what was committed is what the truncation may delete, and nothing more
    assert runtime.truncator._committed == consumer.committed


@pytest.mark.parametrize("region", ["na", "eu", "ap"])
async def test_a_failed_regions_write_means_no_commit_after_the_others_finished(monkeypatch,
                                                                                 region):
    journal = Journal(delays={"na": 3, "eu": 1, "ap": 2}, fail_write=region)
    messages = _messages({"na": 2, "eu": 2, "ap": 2}, garbage=1)
    runtime, consumer = _runtime(journal, monkeypatch, messages)

    assert await runtime._write(runtime.template.prepare(messages),
                                Checkpoint.of(messages)) == STORE_DOWN

    assert "commit" not in journal.events and consumer.committed == {}, journal.events
    # the other regions' writes had ended (not been abandoned mid-way) when the batch failed
    others = [r for r in ("na", "eu", "ap") if r != region]
    assert all(f"write {r} done" in journal.events for r in others), journal.events
    # a store error is the runtime's back-off, not a dead letter for the batch's records
    assert not any(e.startswith("dead letters") for e in journal.events), journal.events


async def test_a_dead_letter_not_accepted_means_no_commit(monkeypatch):
    journal = Journal(fail_dead_letters=True)
    messages = _messages({"eu": 2}, garbage=3)
    runtime, consumer = _runtime(journal, monkeypatch, messages)

    assert await runtime._write(runtime.template.prepare(messages),
                                Checkpoint.of(messages)) == STORE_DOWN

    assert "commit" not in journal.events and consumer.committed == {}, journal.events
    assert "write eu done" in journal.events


async def test_a_batch_fetched_before_a_revocation_is_not_written(monkeypatch):
    """Its partitions may belong to another worker now, which reads them from the committed
    offsets: written here as well, they would be processed twice."""
    journal = Journal()
    messages = _messages({"eu": 2}, garbage=0)
    runtime, consumer = _runtime(journal, monkeypatch, messages)
    prepared, epoch = runtime.template.prepare(messages), runtime._epoch
    await runtime.revoked(consumer.assigned)

    assert await runtime._write(prepared, Checkpoint.of(messages), epoch) == STALE
    assert journal.events == [] and consumer.committed == {}


async def test_a_revocation_waits_for_the_batch_being_written(monkeypatch):
    journal = Journal(delays={"eu": 5})
    messages = _messages({"eu": 2}, garbage=0)
    runtime, consumer = _runtime(journal, monkeypatch, messages)
    writing = asyncio.ensure_future(runtime._write(runtime.template.prepare(messages),
                                                   Checkpoint.of(messages), runtime._epoch))
    await asyncio.sleep(0)  # the write has begun
    await runtime.revoked(consumer.assigned)
    journal.events.append("revoked")

    assert await writing == WRITTEN
    assert journal.events.index("commit") < journal.events.index("revoked"), journal.events
