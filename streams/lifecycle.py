"""Tenant lifecycle: onboarding picks the region (rule 1); a subscription's end starts the
read-only retention period and a deletion request purges at once (rule 4); un-enrolling a
device removes its inventory cache.

Events are applied one by one, in partition order, since each may change what the next sees.
"""

from __future__ import annotations

import uuid
from typing import Sequence

from mdmbus import topics
from mdmbus.regions import UnknownCountry
from mdmbus.services.rules.audit import DELETION_REQUEST, Deletion
from mdmbus.services.rules.inventory_cache import remove_device_cache
from mdmbus.services.rules.residency import onboard
from mdmbus.services.rules.retention import end_subscription, purge_tenant
from mdmbus.streams.app import context, dead_letters
from mdmbus.streams.classify import Accepted, Rejected, classify_events
from mdmbus.streams.dead_letter import send_dead_letters
from mdmbus.streams.ingest import agent_for
from mdmbus.services.stores.retry import until_written

__all__ = ["process_lifecycle"]


async def _apply(a: Accepted) -> Rejected | None:
    ctx = context()
    s, stores = ctx.settings, ctx.stores
    now = ctx.clock.now_dt()
    tenant = a.tenant_id
    if a.kind == "tenant_onboarded":
        try:
            await onboard(stores, tenant, a.record["country"], now)
        except UnknownCountry as exc:
            return a.refuse("unknown_country", str(exc))
        return None
    region = (await ctx.directory.regions_of([tenant])).get(tenant)
    if region is None:
        return a.refuse("tenant_not_onboarded", "lifecycle event for a tenant never onboarded")
    pool = stores.region(region)
    deletions: list[Deletion] = []
    if a.kind == "tenant_subscription_ended" or (
            a.kind == "tenant_subscription_cancelled" and not a.record["deletion_requested"]):
        await end_subscription(pool, tenant, now, s.retention_days, s.purge_after_retention_days)
    elif a.kind in ("tenant_subscription_cancelled", "tenant_deletion_requested"):
        async with pool.acquire() as conn:
            deletions = await purge_tenant(conn, region, tenant, now, DELETION_REQUEST,
                                           s.sweep_batch, lag=0.0)
    elif a.kind == "device_unenrolled":
        device = uuid.UUID(str(a.record["envelope"]["device_id"]))
        async with pool.acquire() as conn:
            deletions = await remove_device_cache(conn, region, now, tenant, device)
    ctx.metrics.count_deletions(deletions)
    return None


async def process_lifecycle(events: Sequence) -> None:
    ctx = await context().ready()
    m = ctx.metrics
    accepted, rejected = classify_events(ctx.contract, m, events)
    for a in accepted:
        refused = await until_written(lambda: _apply(a),
                                      lambda exc: m.store_batches.labels("lifecycle", "error").inc())
        if refused is not None:
            rejected.append(refused)
        else:
            m.lifecycle_events.labels(a.kind).inc()
    await send_dead_letters(dead_letters, rejected, m)


lifecycle_agent = agent_for(topics.TENANT_LIFECYCLE, process_lifecycle)
