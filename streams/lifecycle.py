"""The lifecycle processor: onboarding picks the region (rule 1); a subscription's end starts
the read-only retention period, a deletion request purges at once (rule 4); a purged tenant
stays purged (rule 7).

The lifecycle topic is global and every region's pipeline reads it; each applies the events
of the tenants of its own regions and passes over the others. Events are applied one by one,
in partition order, since each may change what the next sees. Refusals go to the directory's
lifecycle_refusals (lifecycle records hold no personal data)."""

from __future__ import annotations

import logging

from mdmbus.services.rules.audit import Deletion
from mdmbus.services.rules.refusals import Refusal, message
from mdmbus.services.rules.residency import onboard
from mdmbus.services.rules.retention import delete_on_request, end_subscription
from mdmbus.services.stores import directory
from mdmbus.streams.batch import Processor, Written
from mdmbus.streams.classify import Accepted, RefusedMessage
from mdmbus.streams.context import PipelineContext

__all__ = ["lifecycle_processor"]

log = logging.getLogger("mdmbus.lifecycle")


async def _apply(ctx: PipelineContext, a: Accepted) -> list[Deletion] | RefusedMessage | None:
    """The event's effect in this process's regions: deletions, a refusal, or None."""
    s, stores, now, tenant = ctx.settings, ctx.stores, ctx.clock.now_dt(), a.tenant_id
    if a.kind == "tenant_onboarded":
        region, refusal = await onboard(stores, tenant, a.record["country"], now)
        if refusal is not None:
            return a.refuse(refusal, message(refusal))
        return [] if region in ctx.regions else None
    entry = (await directory.entries(stores.directory_pool, [tenant])).get(tenant)
    if entry is None:
        return a.refuse(Refusal.TENANT_NOT_ONBOARDED, message(Refusal.TENANT_NOT_ONBOARDED))
    if entry.region not in ctx.regions:
        return None
    if entry.state == directory.PURGED:
        return a.refuse(Refusal.TENANT_DELETED, message(Refusal.TENANT_DELETED))
    deletion = a.kind == "tenant_deletion_requested" or (
        a.kind == "tenant_subscription_cancelled" and a.record["deletion_requested"])
    if deletion:
        return await delete_on_request(stores, entry.region, tenant, now, s.sweep_batch)
    await end_subscription(stores, entry.region, tenant, now, s.retention_days,
                           s.purge_after_retention_days)
    return []


async def _route(ctx: PipelineContext, items: list[Accepted]
                 ) -> tuple[dict[str | None, list[Accepted]], list[RefusedMessage]]:
    return {None: items}, []  # each event finds its region as it is applied (_apply)


async def _write(ctx: PipelineContext, region: str | None, items: list[Accepted]) -> Written:
    written = Written()
    for a in items:
        try:
            outcome = await _apply(ctx, a)
        except Exception:
            ctx.metrics.store_batches.labels("lifecycle", "error").inc()
            raise
        if isinstance(outcome, RefusedMessage):
            written.refused.append(outcome)
        elif outcome is not None:
            written.deletions += outcome
            ctx.metrics.lifecycle_events.labels(a.kind).inc()
    ctx.metrics.store_batches.labels("lifecycle", "ok").inc()
    return written


def lifecycle_processor() -> Processor:
    return Processor(route=_route, write=_write)
