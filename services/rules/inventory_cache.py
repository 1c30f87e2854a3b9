"""The inventory cache (Windows Phone and Android) is kept between device sessions and removed
when the device is un-enrolled or the account deleted (the account case is the tenant purge,
services/rules/retention.py)."""

from __future__ import annotations

import datetime as dt
import uuid


from mdmbus.categories import Category
from mdmbus.services.rules.audit import INVENTORY_CACHE, Deletion, audit
from mdmbus.services.stores.pools import Connection

__all__ = ["remove_device_cache"]


async def remove_device_cache(conn: Connection, region: str, now: dt.datetime,
                              tenant_id: uuid.UUID, device_id: uuid.UUID) -> list[Deletion]:
    """Deletes the device's cached inventory, with its audit row, in the caller's transaction."""
    rows = await conn.fetch(
        "DELETE FROM records WHERE device_id = $1 AND tenant_id = $2"
        " AND category = 'inventory_cache' RETURNING record_id", device_id, tenant_id)
    deletions = [Deletion(INVENTORY_CACHE, region, Category.INVENTORY_CACHE,
                          [r["record_id"] for r in rows], tenant_id=tenant_id)] if rows else []
    await audit(conn, now, deletions)
    return deletions
