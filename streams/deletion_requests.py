"""The deletion-request processor: a region's tenants' deletion requests, from that region's
gateway (``mdm.<region>.deletion.requests``), carried out at once (rule 4) for tenants of that
region only (rules 1 and 8).

Why a topic per region and a check here too: the Kafka ACLs let only a region's gateway write
its topic and only its pipeline read it, so a regional credential cannot even send a request
to another region's pipeline; and what it can send to its own is acted on only for that
region's tenants, so a stolen gateway credential purges nothing outside its region whatever
tenant id it writes. Anything else on the topic (an onboarding, a subscription's end, a
cancellation: the account service's, on the global lifecycle topic) is refused and counted
(``mdmbus_dead_letters_total{reason=...}``), never applied."""

from __future__ import annotations

from mdmbus.services.rules.refusals import Refusal, keeps_body, message
from mdmbus.services.rules.retention import delete_on_request
from mdmbus.services.stores import directory
from mdmbus.streams.batch import Processor, Written
from mdmbus.streams.classify import Accepted, RefusedMessage
from mdmbus.streams.context import PipelineContext

__all__ = ["deletion_requests_processor", "DELETION_REQUEST_KINDS"]

#: The kinds a gateway may send on its region's deletion-request topic.
DELETION_REQUEST_KINDS = frozenset({"tenant_deletion_requested"})


def _refuse(a: Accepted, reason: Refusal) -> RefusedMessage:
    return a.refuse(reason, message(reason), keeps_body(reason))


async def _route(ctx: PipelineContext, items: list[Accepted]
                 ) -> tuple[dict[str | None, list[Accepted]], list[RefusedMessage]]:
    """Each request stays in the region of the topic it came on: the region whose gateway
    wrote it and whose pipeline reads it."""
    routed: dict[str | None, list[Accepted]] = {}
    for a in items:
        routed.setdefault(a.region, []).append(a)
    return routed, []


async def _write(ctx: PipelineContext, region: str | None, items: list[Accepted]) -> Written:
    written = Written()
    stores, s = ctx.stores, ctx.settings
    assert stores is not None and region is not None
    for a in items:  # one by one, in partition order: each may change what the next sees
        if a.kind not in DELETION_REQUEST_KINDS:
            written.refused.append(_refuse(a, Refusal.NOT_A_DELETION_REQUEST))
            continue
        entry = (await directory.entries(stores.directory_pool, [a.tenant_id])).get(a.tenant_id)
        if entry is None:
            written.refused.append(_refuse(a, Refusal.TENANT_NOT_ONBOARDED))
        elif entry.region != region:
            written.refused.append(_refuse(a, Refusal.WRONG_REGION))
        elif entry.state == directory.PURGED:
            written.refused.append(_refuse(a, Refusal.TENANT_DELETED))
        else:
            written.deletions += await delete_on_request(stores, region, a.tenant_id,
                                                         ctx.clock.now_dt(), s.sweep_batch)
            ctx.metrics.lifecycle_events.labels(a.kind).inc()
    return written


def deletion_requests_processor() -> Processor:
    return Processor(route=_route, write=_write)
