"""The record runtime: one region's record topics consumed in batches by an aiokafka consumer
inside the faust worker (a mode Service started with it), through the one batch template.

Per batch: fetch -> prepare (decode, validate) -> process (route, write, dead letters) ->
commit (mdmbus.streams.commit). Preparing the next batch overlaps the writing of the current
one: while the current batch waits on PostgreSQL, the next is fetched and decoded. What is
committed is truncated by a timer of its own every TRUNCATE_INTERVAL_S, so a batch held up
(a store outage, a wait for an onboarding) does not keep earlier copies readable.

Faults:
- a store that cannot be written: the batch (and the prepared next one) are dropped, every
  partition is sought back to the first offset not durable, and the assignment is paused for a
  back-off (growing to 5 s) before it is fetched again: nothing is buffered while a store is
  down, and nothing is committed that is not durable;
- a rebalance: ``on_partitions_revoked`` waits for the batch being written to commit (so no
  batch is half-committed) and drops the prepared one, and the one being fetched when it
  arrives; the partitions' new owner starts from the committed offsets;
- a crash anywhere: the uncommitted batches are replayed, and every write is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service

from mdmbus.connections import kafka_options
from mdmbus.identities import principal_of
from mdmbus.services.stores.retry import STORE_ERRORS, check_outage
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

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 5.0


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
        self._backoff = _BACKOFF_START_S
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
        """A rebalance: the batch being written commits first (the partitions are still this
        worker's until this returns); every batch fetched before is dropped, the prepared one
        and the one being fetched, since their partitions may go to another worker, which
        reads them from the committed offsets."""
        async with self._write_lock:
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
        while not self.should_stop:
            epoch = self._epoch
            fetching = asyncio.ensure_future(self._fetch())
            current, self._prepared = self._prepared, None
            outcome = WRITTEN if current is None else await self._write(*current)
            nxt = await self._fetched(fetching)
            dropped = [b[1] for b in (current, nxt) if b is not None]
            if outcome == STORE_DOWN:
                # What was fetched meanwhile is dropped too, and read again after a pause.
                await self._back_off(Checkpoint.union(dropped))
            elif outcome == STALE or self._epoch != epoch:
                # Fetched across a rebalance: dropped, and read again from the committed
                # offsets (the positions moved past them).
                await self._rewind(Checkpoint.union(dropped))
            else:
                self._prepared = None if nxt is None else (*nxt, epoch)

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
        """Processes and commits one batch fetched in ``epoch`` (None: the current one);
        returns WRITTEN, STORE_DOWN (nothing committed), or STALE: the batch was fetched
        before a revocation and is not written."""
        async with self._write_lock:
            if epoch is not None and epoch != self._epoch:
                return STALE
            try:
                await self.template.process(prepared)
                await checkpoint.commit(self.consumer, self.truncator,
                                        self.consumer.assignment())
                self._backoff = _BACKOFF_START_S
                return WRITTEN
            except STORE_ERRORS as exc:
                check_outage(exc)
                log.warning("%s: store not writable (%s); pausing for %.1f s, offsets held",
                            self.region, exc, self._backoff)
                return STORE_DOWN

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
        until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)
        while not self.should_stop and time.monotonic() < until:
            # getmany on paused partitions returns nothing; it keeps the member in its group.
            await self.consumer.getmany(timeout_ms=100)
        self.consumer.resume(*[tp for tp in paused if tp in self.consumer.assignment()])
