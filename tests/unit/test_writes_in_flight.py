"""Two writes in flight (MDMBUS_WRITES_IN_FLIGHT=2): batch N+1 is written while batch N
commits, and the commit protocol's order holds: offsets go to Kafka in the order the batches
were read, each only once its batch and every earlier one are durable; a failure or a stop
between the two writes commits nothing past rows that are not durable.

Driven through the runtime's own ``_start`` / ``_settle`` steps with the real batch template,
classifier and Checkpoint; the store, the dead-letter sink and the consumer are fakes that log
what happens, in order (as tests/unit/test_batch_commit_order.py)."""

from __future__ import annotations

import asyncio
from collections import deque

import asyncpg
import pytest
from aiokafka.structs import TopicPartition

from mdmbus.contract import default_registry
from mdmbus.producer import prepare_record
from mdmbus.settings import Settings
from mdmbus.streams.batch import BatchTemplate, Processor, Written
from mdmbus.streams.commit import Checkpoint
from mdmbus.streams.runtime import STORE_DOWN, WRITTEN, RegionRuntime
from mdmbus.streams.transit import Truncator
from mdmbus.topics import TopicKind, topic_name
from tests.unit.examples import example
from tests.unit.test_batch_commit_order import FakeConsumer, FakeCtx, Journal, Msg, _messages

REGISTRY = default_registry()

UPLOAD = topic_name(TopicKind.UPLOAD, "eu")
SESSIONS = topic_name(TopicKind.DEVICE_SESSIONS, "eu")
TP = TopicPartition(UPLOAD, 0)


class Store:
    """Writes batch by batch in the order they are called: each takes its own number of
    event-loop turns (``turns``), or fails on a store outage (``fail``), by call number."""

    def __init__(self, journal: Journal, turns: list[int], fail: set[int] = frozenset()) -> None:
        self.journal, self.turns, self.fail, self.calls = journal, turns, set(fail), 0

    async def write(self, ctx, region, items) -> Written:
        n = self.calls
        self.calls += 1
        self.journal.events.append(f"write {n} start")
        for _ in range(self.turns[n]):
            await asyncio.sleep(0)
        if n in self.fail:
            self.journal.events.append(f"write {n} failed")
            raise asyncpg.exceptions.CannotConnectNowError("the store is restarting")
        self.journal.events.append(f"write {n} durable")
        return Written()


class LoggingConsumer(FakeConsumer):
    async def commit(self, offsets) -> None:
        self.journal.events.append(f"commit {offsets.get(TP, 'sessions')}")
        self.committed.update(offsets)


def _runtime(store: Store, journal: Journal, in_flight: int = 2) -> tuple[RegionRuntime,
                                                                          LoggingConsumer]:
    async def route(ctx, items):
        return {"eu": items}, []

    ctx = FakeCtx()
    ctx.settings = Settings(kafka_security="plaintext", writes_in_flight=in_flight)
    runtime = RegionRuntime(ctx, "eu")
    processor = Processor(route, store.write)
    runtime.template = BatchTemplate(ctx, {TopicKind.UPLOAD: processor,
                                           TopicKind.DEVICE_SESSIONS: processor})
    consumer = LoggingConsumer(journal, {TP, TopicPartition(SESSIONS, 0)})
    runtime._consumer = consumer
    runtime._truncator = Truncator(None, "pipeline", "eu", ctx.metrics)
    return runtime, consumer


def _batches(n: int, size: int = 2) -> list[list[Msg]]:
    """n consecutive batches of eu uploads on partition 0 (offsets 0.., size each)."""
    out = []
    for b in range(n):
        batch = _messages({"eu": size}, garbage=0)
        for i, m in enumerate(batch):
            m.offset = b * size + i
        out.append(batch)
    return out


async def _start(runtime: RegionRuntime, batch: list[Msg]) -> str:
    return await runtime._start(runtime.template.prepare(batch), Checkpoint.of(batch),
                                runtime._epoch)


async def test_the_next_batch_is_written_while_the_first_commits_and_commits_follow_read_order():
    journal = Journal()
    store = Store(journal, turns=[8, 0])  # the first batch is slow, the second fast
    runtime, consumer = _runtime(store, journal)
    first, second = _batches(2)
    assert await _start(runtime, first) == WRITTEN
    assert await _start(runtime, second) == WRITTEN  # did not wait for the first
    assert await runtime._settle(0) == WRITTEN
    ev = journal.events
    # both writes were in flight at once: the second began before the first was durable
    assert ev.index("write 1 start") < ev.index("write 0 durable"), ev
    # the second was durable first, yet nothing was committed before the first was durable,
    # and the commits came in read order: the first batch's end (2), then the second's (4)
    assert ev.index("write 1 durable") < ev.index("write 0 durable"), ev
    assert [e for e in ev if e.startswith("commit")] == ["commit 2", "commit 4"], ev
    assert ev.index("commit 2") > ev.index("write 0 durable"), ev
    assert consumer.committed[TP] == 4 and runtime.truncator._committed[TP] == 4


async def test_a_failure_of_the_first_write_commits_neither_batch():
    """The second batch's rows are durable, but its offsets would cover the first's, which
    are not: nothing is committed, both are read again from the first one's offset."""
    journal = Journal()
    store = Store(journal, turns=[6, 0], fail={0})
    runtime, consumer = _runtime(store, journal)
    first, second = _batches(2)
    await _start(runtime, first)
    await _start(runtime, second)
    assert await runtime._settle(0) == STORE_DOWN
    assert "write 1 durable" in journal.events  # durable, and still not committed
    assert consumer.committed == {} and not any(e.startswith("commit") for e in journal.events)
    assert runtime.truncator._committed == {}
    assert Checkpoint.union(runtime._dropped).first == {TP: 0}


async def test_a_failure_of_the_second_write_commits_the_first_only():
    journal = Journal()
    store = Store(journal, turns=[3, 6], fail={1})
    runtime, consumer = _runtime(store, journal)
    first, second = _batches(2)
    await _start(runtime, first)
    await _start(runtime, second)
    assert await runtime._settle(0) == STORE_DOWN
    assert [e for e in journal.events if e.startswith("commit")] == ["commit 2"]
    assert consumer.committed == {TP: 2} and runtime.truncator._committed == {TP: 2}
    assert Checkpoint.union(runtime._dropped).first == {TP: 2}


async def test_stopped_between_the_two_writes_nothing_past_the_durable_rows_is_committed():
    """The worker stops (its run loop is cancelled) when the second batch is durable and the
    first is not: no offset is committed, so the first batch is read again on restart."""
    journal = Journal()
    store = Store(journal, turns=[50, 0])
    runtime, consumer = _runtime(store, journal)
    first, second = _batches(2)
    await _start(runtime, first)
    await _start(runtime, second)
    settling = asyncio.ensure_future(runtime._settle(0))
    while "write 1 durable" not in journal.events:
        await asyncio.sleep(0)
    assert "write 0 durable" not in journal.events
    settling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await settling
    assert consumer.committed == {} and not any(e.startswith("commit") for e in journal.events)


async def test_a_third_batch_waits_for_the_first_to_commit():
    journal = Journal()
    store = Store(journal, turns=[6, 6, 0])
    runtime, consumer = _runtime(store, journal)
    batches = _batches(3)
    for batch in batches:
        assert await _start(runtime, batch) == WRITTEN
    assert await runtime._settle(0) == WRITTEN
    ev = journal.events
    # starting the third settled the first: committed before the third began
    assert ev.index("commit 2") < ev.index("write 2 start"), ev
    assert [e for e in ev if e.startswith("commit")] == ["commit 2", "commit 4", "commit 6"]


async def test_a_sessions_batch_is_written_alone():
    """Sessions set the deadlines of stored commands: a batch holding them waits for every
    earlier batch to commit, and the next batch waits for it."""
    journal = Journal()
    store = Store(journal, turns=[6, 6, 0])
    runtime, consumer = _runtime(store, journal)
    first, third = _batches(2)
    session = prepare_record("device_session", example("device_session"), REGISTRY)
    sessions = [Msg(SESSIONS, 0, 0, session.key, session.value)]
    for m in third:
        m.offset += 10
    await _start(runtime, first)
    await _start(runtime, sessions)
    await _start(runtime, third)
    assert await runtime._settle(0) == WRITTEN
    ev = journal.events
    # the sessions batch began after the first had committed, the third after it was durable
    assert ev.index("commit 2") < ev.index("write 1 start"), ev
    assert ev.index("write 1 durable") < ev.index("write 2 start"), ev
    assert [e for e in ev if e.startswith("commit")] == ["commit 2", "commit sessions",
                                                         "commit 14"], ev


async def test_one_write_in_flight_is_the_protocol_of_one_batch_at_a_time():
    journal = Journal()
    store = Store(journal, turns=[6, 0])
    runtime, consumer = _runtime(store, journal, in_flight=1)
    first, second = _batches(2)
    await _start(runtime, first)
    await _start(runtime, second)
    await runtime._settle(0)
    ev = journal.events
    assert ev.index("commit 2") < ev.index("write 1 start"), ev
    assert consumer.committed == {TP: 4}


async def test_an_idle_topic_commits_what_is_in_flight(monkeypatch):
    """The run loop's step with nothing new fetched commits every batch still in flight (it
    does not wait for a next batch that may never come)."""
    journal = Journal()
    store = Store(journal, turns=[0])
    runtime, consumer = _runtime(store, journal)
    first, = _batches(1)
    runtime._prepared = (runtime.template.prepare(first), Checkpoint.of(first), runtime._epoch)

    async def nothing():
        return None
    monkeypatch.setattr(runtime, "_fetch", nothing)
    await runtime._step()  # writes the prepared batch; it may stay in flight
    await runtime._step()  # nothing new: commits it
    assert consumer.committed == {TP: 2} and runtime._in_flight == deque()
