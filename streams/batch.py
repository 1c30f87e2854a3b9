"""The one batch template every processor runs through:

    classify -> route -> write per region (regions side by side) -> dead letters

and then the caller's commit (:mod:`mdmbus.streams.commit` for the record runtime, faust's own
acknowledgement for the lifecycle agent), which is only reached when every step before it is
durable. A processor is what one kind of topic adds: its :class:`Processor` says where its
records go (``route``) and how they are written (``write``); everything else is here, once.

``prepare`` (decode and validate, CPU only) is split from ``process`` (the stores and Kafka)
so that the runtime can prepare the next batch while the current one is being written.

Faults: a store that cannot be written raises out of ``process`` (one of
``mdmbus.services.stores.retry.STORE_ERRORS``), and the caller backs off and replays the batch;
any other exception is a fault of one record, found by processing the batch again one message
at a time, and that record becomes a dead letter (``processing_error``) while its neighbours
are stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping, Sequence

from mdmbus.services.rules.audit import Deletion
from mdmbus.services.rules.refusals import Refusal, keeps_body
from mdmbus.services.rules.refusals import message as refusal_message
from mdmbus.services.stores.retry import STORE_ERRORS
from mdmbus.streams.classify import Accepted, Message, RefusedMessage, classify_all
from mdmbus.streams.context import PipelineContext
from mdmbus.streams.dead_letters import record_refusals
from mdmbus.topics import TopicKind, parse_topic

__all__ = ["Prepared", "Written", "Processor", "BatchTemplate"]

log = logging.getLogger("mdmbus.pipeline")


@dataclass
class Prepared:
    """A classified batch: its verdicts, and the messages themselves (for isolating a fault)."""

    messages: Sequence[Message]
    accepted: list[Accepted]
    rejected: list[RefusedMessage]


@dataclass
class Written:
    """What a processor's write left to do: the records a rule refused, the rows it deleted."""

    refused: list[RefusedMessage] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)


#: Splits a topic kind's accepted records by the region whose store takes them; returns them
#: and the records refused on the way (rule 1). The key None is a processor's own grouping.
Route = Callable[[PipelineContext, list[Accepted]],
                 Awaitable[tuple[dict[str | None, list[Accepted]], list[RefusedMessage]]]]
#: Writes one region's records of one topic kind durably (its own transaction).
Write = Callable[[PipelineContext, str | None, list[Accepted]], Awaitable[Written]]


@dataclass(frozen=True)
class Processor:
    route: Route
    write: Write


class BatchTemplate:
    def __init__(self, ctx: PipelineContext, processors: Mapping[TopicKind, Processor]) -> None:
        self.ctx = ctx
        self.processors = processors

    def prepare(self, messages: Sequence[Message]) -> Prepared:
        accepted, rejected, _ = classify_all(self.ctx.contract, self.ctx.metrics, messages)
        return Prepared(messages, accepted, rejected)

    async def process(self, prepared: Prepared) -> None:
        """The batch's effects, durably; a store outage raises, any other fault is isolated."""
        try:
            await self._process(prepared)
        except STORE_ERRORS:
            raise
        except Exception:
            if len(prepared.messages) == 1:
                raise
            log.exception("batch of %d failed; isolating the record at fault",
                          len(prepared.messages))
            for message in prepared.messages:
                await self._process_one(message)

    async def _process_one(self, message: Message) -> None:
        try:
            await self._process(self.prepare([message]))
        except STORE_ERRORS:
            raise
        except Exception as exc:
            # The exception's text is not logged or kept: it may quote the record's values.
            log.error("record at %s[%d]@%d failed: %s", message.topic, message.partition,
                      message.offset, type(exc).__name__)
            _, region = parse_topic(message.topic)
            await record_refusals(self.ctx, [RefusedMessage(
                Refusal.PROCESSING_ERROR, f"{refusal_message(Refusal.PROCESSING_ERROR)}: "
                f"{type(exc).__name__}", "", None, False, message.key, message.topic,
                message.partition, message.offset, region)])

    async def _process(self, prepared: Prepared) -> None:
        ctx = await self.ctx.ready()
        rejected = list(prepared.rejected)
        by_kind: dict[TopicKind, list[Accepted]] = defaultdict(list)
        for a in prepared.accepted:
            by_kind[a.topic_kind].append(a)
        jobs: dict[str | None, list[tuple[Processor, list[Accepted]]]] = defaultdict(list)
        for kind, items in by_kind.items():
            processor = self.processors[kind]
            routed, refused = await processor.route(ctx, items)
            rejected += refused
            for region, its in routed.items():
                jobs[region].append((processor, its))
        results = await asyncio.gather(*(self._write(region, work) for region, work in jobs.items()),
                                       return_exceptions=True)
        for result in results:  # every region's write has finished before one failure is raised
            if isinstance(result, BaseException):
                raise result
            rejected += result.refused
            ctx.metrics.count_deletions(result.deletions)
        if rejected:
            await record_refusals(ctx, rejected)

    async def _write(self, region: str | None,
                     work: list[tuple[Processor, list[Accepted]]]) -> Written:
        total = Written()
        for processor, items in work:
            written = await processor.write(self.ctx, region, items)
            total.refused += written.refused
            total.deletions += written.deletions
        return total


async def residency_route(ctx: PipelineContext, items: list[Accepted]
                          ) -> tuple[dict[str | None, list[Accepted]], list[RefusedMessage]]:
    """Rule 1 at the pipeline: each record to the store of the region whose topic it came
    from, if its tenant lives there; refused otherwise (services/rules/residency.py).

    Onboarding travels on its own topic, so a tenant's first records can overtake it: a tenant
    not in the directory yet is looked up again for up to ``unknown_tenant_wait_s``."""
    from mdmbus.services.rules.residency import residency_problem
    tenants = {a.tenant_id for a in items}
    regions = await ctx.region_cache.regions_of(tenants)
    deadline = asyncio.get_running_loop().time() + ctx.settings.unknown_tenant_wait_s
    while len(regions) < len(tenants) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        regions = await ctx.region_cache.regions_of(tenants)
    routed: dict[str | None, list[Accepted]] = defaultdict(list)
    refused: list[RefusedMessage] = []
    for a in items:
        problem = residency_problem(a.region, regions.get(a.tenant_id))
        if problem is None:
            routed[a.region].append(a)
        else:
            refused.append(a.refuse(problem, refusal_message(problem), keeps_body(problem)))
    return routed, refused
