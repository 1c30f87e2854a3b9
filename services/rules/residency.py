"""Rule 1, residency: the tenant's onboarding country picks its region (mdmbus/regions.py),
the global directory records it once and for good, and every record of the tenant is stored
in that region only: a record arriving in another region's topic is refused there and its
body is not kept."""

from __future__ import annotations

import datetime as dt
import uuid

from mdmbus.regions import UnknownCountry, region_of_country
from mdmbus.services.rules.refusals import Refusal
from mdmbus.services.stores import directory
from mdmbus.services.stores.pools import Stores

__all__ = ["residency_problem", "onboard"]


def residency_problem(topic_region: str | None, tenant_region: str | None) -> Refusal | None:
    """Why a record of a tenant living in ``tenant_region`` (None: not in the directory) may
    not be stored in ``topic_region`` (None: a topic of no region, where no tenant lives), or
    None."""
    if tenant_region is None:
        return Refusal.TENANT_NOT_ONBOARDED
    if tenant_region != topic_region:
        return Refusal.WRONG_REGION
    return None


async def onboard(stores: Stores, tenant: uuid.UUID, country: str,
                  now: dt.datetime) -> tuple[str | None, Refusal | None]:
    """Registers the tenant in the directory and in its region's store, if that region is one
    of ``stores``'; returns (its region, a refusal). Idempotent: an onboarding replayed or sent
    again changes nothing; a deleted tenant stays deleted; a tenant never moves."""
    try:
        region = region_of_country(country)
    except UnknownCountry:
        return None, Refusal.UNKNOWN_COUNTRY
    if region not in stores.regions:
        return region, None  # another region's pipeline onboards it
    entry, _ = await directory.claim(stores.directory_of(region), tenant, region,
                                     country.upper(), now)
    if entry.state == directory.PURGED:
        return entry.region, Refusal.TENANT_DELETED
    if entry.region != region:
        return entry.region, Refusal.ALREADY_ONBOARDED
    await stores.region(region).execute(
        "INSERT INTO tenants (tenant_id, country, region, onboarded_at)"
        " SELECT $1, $2, $3, $4 WHERE NOT EXISTS"
        "   (SELECT 1 FROM purged_tenants WHERE tenant_id = $1)"
        " ON CONFLICT (tenant_id) DO NOTHING", tenant, entry.country, region, now)
    return region, None
