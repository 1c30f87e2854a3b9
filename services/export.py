"""Read and export of a tenant's data (rule 4): allowed while the tenant is active and through
its read-only retention period, until the purge. Records come back decoded with the contract;
opaque fields stay opaque bytes."""

from __future__ import annotations

import uuid
from typing import Any, AsyncIterator

import asyncpg

from mdmbus.contract import Registry, default_registry
from mdmbus.services.stores.sealing import open_record

__all__ = ["export_records"]


async def export_records(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                         contract: Registry | None = None,
                         ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yields (kind, record) for every record of the tenant held in this region store, from a
    server-side cursor (in the caller's transaction), so an export of any size streams."""
    contract = contract or default_registry()
    async for row in conn.cursor("SELECT tenant_id, record_id, body, wrapped_key, kek_id"
                                 " FROM records WHERE tenant_id = $1"
                                 " AND held ORDER BY event_time, record_id",
                                 tenant_id, prefetch=200):
        yield contract.codec.decode(open_record(row))
