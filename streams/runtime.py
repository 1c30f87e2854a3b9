"""The record runtime: one region's record topics consumed in batches by an aiokafka consumer
inside the faust worker (a mode Service started with it), through the one batch template.

Per batch: fetch -> prepare (decode, validate) -> process (route, write, dead letters) ->
commit (mdmbus.streams.commit). Preparing the next batch overlaps the writing of the current
one: while the current batch waits on PostgreSQL, the next is fetched and decoded. And up to
MDMBUS_WRITES_IN_FLIGHT batches of upload and relay records are written at once (each in its
own transaction): batch N+1 is written while batch N's transaction commits and fsyncs. The
commit protocol's order holds: batches are committed to Kafka in the order they were read,
each only once it and every batch before it are durable, and only committed offsets are
truncated. A batch holding sessions, commands or deletion requests (which change or read rows
of earlier batches) is written alone, after every earlier batch has committed. What is
committed is truncated by a timer of its own every TRUNCATE_INTERVAL_S, so a batch held up
(a store outage, a wait for an onboarding) does not keep earlier copies readable.

Faults:
- a store that cannot be written: the batch, the batches in flight after it (written or
  not, their offsets are not committed) and the prepared next one are dropped, every
  partition is sought back to the first offset not committed, and the assignment is paused for a
  back-off (growing to 5 s) before it is fetched again: nothing is buffered while a store is
  down, and nothing is committed that is not durable;
- a rebalance: ``on_partitions_revoked`` waits for the batches being written to commit (so
  no batch is half-committed) and drops the prepared one, and the one being fetched when it
  arrives; the partitions' new owner starts from the committed offsets;
- a crash anywhere: the uncommitted batches are replayed, and every write is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service

from mdmbus.connections import kafka_options
from mdmbus.identities import principal_of
from mdmbus.services.stores.retry import STORE_ERRORS, Backoff, check_outage
from mdmbus.streams.batch import BatchTemplate, Prepared
from mdmbus.streams.commit import Checkpoint
from mdmbus.streams.context import PipelineContext
from mdmbus.streams.deletion_requests import deletion_requests_processor
from mdmbus.streams.records import records_processor
from mdmbus.streams.sessions import sessions_processor
from mdmbus.streams.transit import Truncator
from mdmbus.topics import TRUNCATE_INTERVAL_S, TopicKind, group_name, topic_name

__all__ = ["RegionRuntime", "RECORD_TOPICS", "PROCESS"]

log = logging.getLogger("mdmbus.runtime")

#: The process (consumer group) this runtime reads as.
PROCESS = "pipeline"
#: The topic kinds a region's record runtime consumes, and their processors.
RECORD_TOPICS = {
    TopicKind.UPLOAD: records_processor,
    TopicKind.RELAY: records_processor,
    TopicKind.DEVICE_COMMANDS: records_processor,
    TopicKind.DEVICE_SESSIONS: sessions_processor,
    TopicKind.DELETION_REQUESTS: deletion_requests_processor,
}

#: What became of a batch (RegionRuntime._write).
WRITTEN, STORE_DOWN, STALE = "written", "store down", "stale"

#: Topic kinds whose batches may be written while earlier ones are still being written: each
#: record is an idempotent insert of its own, read by nothing else in the pipeline. Sessions
#: (which set the deadlines of stored commands), commands (which read their session) and
#: deletion requests (which delete what earlier batches stored) are written in order.
OVERLAPPING = frozenset({TopicKind.UPLOAD, TopicKind.RELAY})


@dataclass
class _InFlight:
    """A batch being written: its processing task, and what committing it stores."""

    task: asyncio.Future
    checkpoint: Checkpoint
    #: Whether a later batch may be written before this one has committed.
    overlaps: bool


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runtime: "RegionRuntime") -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked) -> None:
        await self.runtime.revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        self.runtime.assigned(assigned)
        log.info("%s: assigned %s", self.runtime.region, sorted(f"{tp.topic}[{tp.partition}]"
                                                                for tp in assigned))


class RegionRuntime(Service):
    """Consumes one region's record topics; one per region a worker serves."""

    def __init__(self, ctx: PipelineContext, region: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.region = region
        self.group = group_name(PROCESS, region)
        self.topics = [topic_name(kind, region) for kind in RECORD_TOPICS]
        self.template = BatchTemplate(ctx, {kind: make() for kind, make in RECORD_TOPICS.items()})
        self._overlapping = {topic_name(kind, region) for kind in OVERLAPPING}
        self._max_in_flight = max(1, ctx.settings.writes_in_flight)
        #: Batches being written, oldest first; committed in this order (``_settle``).
        self._in_flight: deque[_InFlight] = deque()
        #: Checkpoints of batches dropped without a commit (a store outage, a revocation),
        #: where the run loop rewinds or backs off from.
        self._dropped: list[Checkpoint] = []
        #: Set when a write failed because the store is down (``_settle``).
        self._store_down = False
        self._consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None
        self._truncator: Truncator | None = None
        #: Held while a batch is written and committed, and while a revocation is handled: a
        #: revocation waits for the batch being written, and no batch starts during one.
        self._write_lock = asyncio.Lock()
        #: The next batch, prepared while the current one is written, with the epoch it was
        #: fetched in.
        self._prepared: tuple[Prepared, Checkpoint, int] | None = None
        #: Counts revocations: a batch fetched before one is not written (``_write``).
        self._epoch = 0
        #: How long a store outage pauses the consumer (the store retries' one policy).
        self._backoff = Backoff()
        #: Partitions assigned since the last truncation, whose earlier commits it adopts.
        self._adopt: set = set()

    @property
    def shortlabel(self) -> str:
        return f"RecordRuntime[{self.region}]"

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The record consumer, made by on_start: used before, an error that says so."""
        if self._consumer is None:
            raise RuntimeError(f"{self.shortlabel} is not started: no consumer yet")
        return self._consumer

    @property
    def truncator(self) -> Truncator:
        """The truncator, made by on_start: used before, an error that says so."""
        if self._truncator is None:
            raise RuntimeError(f"{self.shortlabel} is not started: no truncator yet")
        return self._truncator

    async def on_start(self) -> None:
        s = self.ctx.settings
        principal = principal_of(PROCESS, self.region)
        self._consumer = consumer = AIOKafkaConsumer(**kafka_options(
            s, principal, self.region, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=s.batch_size,
            fetch_max_wait_ms=int(s.batch_wait_s * 1000) or 1))
        consumer.subscribe(self.topics, listener=_Listener(self))
        # Truncation (DeleteRecords) as the same principal: it may delete only what it reads.
        self.admin = AIOKafkaAdminClient(**kafka_options(s, principal, self.region))
        await self.ctx.ready()
        await self.admin.start()
        await consumer.start()
        self._truncator = Truncator(self.admin, PROCESS, self.region, self.ctx.metrics)

    async def on_stop(self) -> None:
        if self._truncator is not None:
            # What was committed since the last tick is not left readable until a restart.
            try:
                await self._truncator.truncate(force=True)
            except Exception as exc:  # noqa: BLE001 -- stopping goes on; the next start adopts it
                log.warning("%s: last truncation failed (%s)", self.region, exc)
        if self._consumer is not None:
            await self._consumer.stop()
        if self.admin is not None:
            await self.admin.close()

    def assigned(self, assigned) -> None:
        """A rebalance gave this worker ``assigned``: the next truncation adopts what its
        group committed on them before (mdmbus.streams.transit.Truncator.adopt)."""
        self._adopt |= set(assigned)

    async def revoked(self, revoked) -> None:
        """A rebalance: the batches being written commit first, in order (the partitions are
        still this worker's until this returns); every batch fetched before is dropped, the
        prepared one and the one being fetched, since their partitions may go to another worker, which
        reads them from the committed offsets."""
        async with self._write_lock:
            await self._settle_locked(0)
            self._epoch += 1
            self._prepared = None
            if self._truncator is not None:
                self._truncator.forget(revoked)

    async def _fetch(self) -> tuple[Prepared, Checkpoint] | None:
        batches = await self.consumer.getmany(timeout_ms=int(self.ctx.settings.batch_wait_s * 1000)
                                              or 1, max_records=self.ctx.settings.batch_size)
        messages = [m for msgs in batches.values() for m in msgs]
        if not messages:
            return None
        return self.template.prepare(messages), Checkpoint.of(messages)

    @Service.task
    async def _run(self) -> None:
        try:
            while not self.should_stop:
                await self._step()
            await self._settle(0)  # a graceful stop commits what is durable
        finally:
            for batch in self._in_flight:  # cancelled: replayed from the committed offsets
                batch.task.cancel()

    async def _step(self) -> None:
        """Starts writing the prepared batch while the next is fetched and prepared, and
        commits the batches in flight beyond what may stay in flight (all of them when
        nothing new came)."""
        epoch = self._epoch
        fetching = asyncio.ensure_future(self._fetch())
        current, self._prepared = self._prepared, None
        outcome = WRITTEN
        if current is not None:
            outcome = await self._start(*current)
        if outcome == WRITTEN:
            # Nothing new to write: what is in flight is committed now, not when the next
            # batch comes (which may be never).
            outcome = await self._settle(self._may_stay() if current is not None else 0)
        nxt = await self._fetched(fetching)
        dropped, self._dropped = self._dropped, []
        down, self._store_down = self._store_down, False
        if nxt is not None:
            dropped.append(nxt[1])
        if outcome == STORE_DOWN or down:
            # What was in flight or fetched meanwhile is dropped too, and read again after a
            # pause from the first offset not committed.
            await self._back_off(Checkpoint.union(dropped))
        elif outcome == STALE or self._epoch != epoch:
            # Fetched across a rebalance: dropped, and read again from the committed
            # offsets (the positions moved past them).
            await self._rewind(Checkpoint.union(dropped))
        else:
            self._prepared = None if nxt is None else (*nxt, epoch)

    def _overlaps(self, checkpoint: Checkpoint) -> bool:
        return all(tp.topic in self._overlapping for tp in checkpoint.next)

    def _may_stay(self) -> int:
        """How many batches may stay in flight once the latest has started: none after a
        batch that is written alone."""
        if self._in_flight and self._in_flight[-1].overlaps:
            return self._max_in_flight - 1
        return 0

    async def _start(self, prepared: Prepared, checkpoint: Checkpoint, epoch: int) -> str:
        """Starts writing a batch fetched in ``epoch``, after every earlier batch has
        committed if it is written alone (or if as many as may be are in flight); returns
        WRITTEN (started), STALE (fetched before a revocation: not written) or STORE_DOWN
        (an earlier batch failed: not written)."""
        overlaps = self._overlaps(checkpoint)
        async with self._write_lock:
            if epoch != self._epoch:
                self._dropped.append(checkpoint)
                return STALE
            # Written alone, or after one written alone: once every earlier batch committed.
            outcome = await self._settle_locked(self._may_stay() if overlaps else 0)
            if outcome != WRITTEN:
                self._dropped.append(checkpoint)
                return outcome
            self._in_flight.append(_InFlight(
                asyncio.ensure_future(self.template.process(prepared)), checkpoint, overlaps))
            return WRITTEN

    async def _settle(self, keep: int) -> str:
        async with self._write_lock:
            return await self._settle_locked(keep)

    async def _settle_locked(self, keep: int) -> str:
        """Waits for the oldest batches in flight until at most ``keep`` remain, committing
        each in turn once it is durable (every batch before it is, being older). A batch that
        fails on a store outage is not committed, nor is any batch after it (their rows may be
        durable: replayed, idempotently); they are dropped and STORE_DOWN returned."""
        while len(self._in_flight) > keep:
            oldest = self._in_flight[0]
            try:
                await oldest.task
            except STORE_ERRORS as exc:
                check_outage(exc)
                log.warning("%s: store not writable (%s); pausing for %.1f s, offsets held",
                            self.region, exc, self._backoff.current_s)
                await self._drop_in_flight()
                self._store_down = True
                return STORE_DOWN
            self._in_flight.popleft()
            await oldest.checkpoint.commit(self.consumer, self.truncator,
                                           self.consumer.assignment())
            self._backoff.reset()
        return WRITTEN

    async def _drop_in_flight(self) -> None:
        """Lets every batch in flight finish, commits none of them, and keeps their
        checkpoints for the rewind."""
        while self._in_flight:
            batch = self._in_flight.popleft()
            try:
                await batch.task
            except Exception as exc:  # noqa: BLE001 -- not committed either way; replayed
                log.info("%s: a batch in flight after a failed one ended with %s", self.region,
                         type(exc).__name__)
            self._dropped.append(batch.checkpoint)

    @Service.timer(TRUNCATE_INTERVAL_S)
    async def _truncate(self) -> None:
        await self.truncate()

    async def truncate(self) -> None:
        """Truncates what has been committed since the last time (mdmbus.streams.transit)."""
        if self._truncator is not None and self._consumer is not None:
            adopt, self._adopt = self._adopt, set()
            try:
                self._adopt |= await self.truncator.adopt(adopt & self.consumer.assignment())
            except Exception as exc:  # noqa: BLE001 -- the timer goes on; adopted next time
                log.warning("%s: committed offsets not read (%s); retried", self.region, exc)
                self._adopt |= adopt
            # A revocation may have come during any await here (this does not hold the write
            # lock, so as not to hold batches up behind the broker's admin calls): what is no
            # longer this worker's is left to its new owner before each step.
            self._drop_unassigned()
            await self.truncator.truncate(force=True)
            self._drop_unassigned()
            await self.truncator.roll_idle(self.ctx.producers[self.region], self._highwater)

    def _drop_unassigned(self) -> None:
        stale = self.truncator.partitions() - self.consumer.assignment()
        if stale:
            self.truncator.forget(stale)

    def _highwater(self, tp) -> int | None:
        """The partition's end as the consumer last saw it; None once it is not assigned."""
        return self.consumer.highwater(tp) if tp in self.consumer.assignment() else None

    async def _fetched(self, fetching: asyncio.Future) -> tuple[Prepared, Checkpoint] | None:
        try:
            return await fetching
        except KafkaError as exc:  # the broker away: aiokafka reconnects; try again shortly
            log.warning("%s: fetch failed (%s)", self.region, exc)
            await self.sleep(1.0)
            return None

    async def _write(self, prepared: Prepared, checkpoint: Checkpoint,
                     epoch: int | None = None) -> str:
        """Writes and commits one batch fetched in ``epoch`` (None: the current one) and
        every batch in flight before it; returns WRITTEN, STORE_DOWN (nothing of it
        committed), or STALE: the batch was fetched before a revocation and is not written."""
        outcome = await self._start(prepared, checkpoint, self._epoch if epoch is None else epoch)
        return outcome if outcome != WRITTEN else await self._settle(0)

    async def _rewind(self, checkpoint: Checkpoint) -> None:
        """Sets each partition of dropped batches that is still this worker's back to its
        committed offset (its batch's first offset if it has none)."""
        for tp, first in checkpoint.first.items():
            if tp not in self.consumer.assignment():
                continue
            try:
                committed = await self.consumer.committed(tp)
                self.consumer.seek(tp, first if committed is None else committed)
            except (KafkaError, IllegalStateError) as exc:  # taken by another rebalance
                log.info("%s: %s[%d] not rewound (%s)", self.region, tp.topic, tp.partition,
                         exc)

    async def _back_off(self, checkpoint: Checkpoint) -> None:
        """Seeks back to the first offset not durable, pauses the assignment for a while, and
        resumes: the batch is fetched and written again."""
        assigned = self.consumer.assignment()
        for tp, offset in checkpoint.first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        paused = list(assigned)
        self.consumer.pause(*paused)
        until = time.monotonic() + self._backoff.next()
        while not self.should_stop and time.monotonic() < until:
            # getmany on paused partitions returns nothing; it keeps the member in its group.
            await self.consumer.getmany(timeout_ms=100)
        self.consumer.resume(*[tp for tp in paused if tp in self.consumer.assignment()])
