"""Read/export of a tenant's data: allowed while active and throughout the read-only
retention period (rule 4), until the purge. Records are decoded with the contract; opaque
fields stay opaque bytes."""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator

from mdmbus.contract import Registry, default_registry
from mdmbus.services.rules.residency import TenantDirectory
from mdmbus.services.stores.pools import Stores

__all__ = ["export_tenant"]


async def export_tenant(stores: Stores, tenant_id: uuid.UUID,
                        contract: Registry | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yields (kind, record) for every record of the tenant held in its region's store."""
    contract = contract or default_registry()
    region = (await TenantDirectory(stores).regions_of([tenant_id])).get(tenant_id)
    if region is None:
        return
    async with stores.region(region).acquire() as conn:
        async with conn.transaction():
            async for row in conn.cursor("SELECT body FROM records WHERE tenant_id = $1"
                                         " AND body IS NOT NULL ORDER BY event_time", tenant_id):
                yield contract.codec.decode(row["body"])
