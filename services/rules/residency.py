"""Rule 1, residency: the tenant's onboarding country picks its region, and each of the
tenant's rows is written to that region's store only.

The directory of tenants lives in the region stores themselves (a tenant's row is in its own
region and nowhere else); a processor keeps a cache of tenant -> region, which never changes
after onboarding. Whether a tenant may still be written is decided by the store at write time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Iterable

import asyncpg

from mdmbus.regions import REGIONS, region_of_country
from mdmbus.services.stores.pools import Stores

__all__ = ["TenantDirectory", "onboard"]


class TenantDirectory:
    """tenant id -> region, asked of every region store on a miss, cached per process."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._region: dict[uuid.UUID, str] = {}

    async def regions_of(self, tenant_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        wanted = set(tenant_ids)
        missing = [t for t in wanted if t not in self._region]
        if missing:
            for region in REGIONS:
                # A purged tenant still routes to its region, where the store refuses its
                # records as deleted (services/stores/records.py).
                rows = await self._stores.region(region).fetch(
                    "SELECT tenant_id FROM tenants WHERE tenant_id = ANY($1::uuid[])"
                    " UNION SELECT tenant_id FROM purged_tenants WHERE tenant_id = ANY($1::uuid[])",
                    missing)
                for row in rows:
                    self._region[row["tenant_id"]] = region
        return {t: self._region[t] for t in wanted if t in self._region}


async def onboard(stores: Stores, tenant_id: uuid.UUID, country: str, now: dt.datetime) -> tuple[str, bool]:
    """Registers the tenant in its region; returns (region, newly onboarded).

    Raises mdmbus.regions.UnknownCountry for a country the region table does not list. A tenant
    already onboarded keeps its region: residency never moves silently.
    """
    region = region_of_country(country)
    for other in REGIONS:
        existing = await stores.region(other).fetchval(
            "SELECT region FROM tenants WHERE tenant_id = $1", tenant_id)
        if existing is not None:
            return existing, False
    conn: asyncpg.Pool = stores.region(region)
    status = await conn.execute(
        "INSERT INTO tenants (tenant_id, country, region, onboarded_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (tenant_id) DO NOTHING", tenant_id, country.upper(), region, now)
    return region, status.endswith(" 1")
