"""The global tenant directory (docs/design.md section 3): tenant id -> region, country and
lifecycle state. The pipeline routes by it (rule 1), the lifecycle writes it, and a purged
tenant's row stays as a tombstone so that nothing can bring the tenant back (rule 7)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Iterable

import asyncpg
from mdmbus.services.stores.pools import Connection

__all__ = ["Entry", "RegionCache", "entries", "claim", "mark_retention", "mark_purged",
           "ACTIVE", "RETENTION", "PURGED"]

ACTIVE, RETENTION, PURGED = "active", "retention", "purged"


@dataclass(frozen=True, slots=True)
class Entry:
    tenant_id: uuid.UUID
    region: str
    country: str
    state: str
    read_only_until: dt.datetime | None = None
    purge_at: dt.datetime | None = None


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(row["tenant_id"], row["region"], row["country"], row["state"],
                 row["read_only_until"], row["purge_at"])


_COLUMNS = "tenant_id, region, country, state, read_only_until, purge_at"


async def entries(conn: Connection | asyncpg.Pool,
                  tenants: Iterable[uuid.UUID]) -> dict[uuid.UUID, Entry]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM tenant_directory"
                            " WHERE tenant_id = ANY($1::uuid[])", list(tenants))
    return {row["tenant_id"]: _entry(row) for row in rows}


async def claim(conn: Connection | asyncpg.Pool, tenant: uuid.UUID, region: str,
                country: str, now: dt.datetime) -> tuple[Entry, bool]:
    """Registers a tenant in ``region``; returns (its entry, newly registered). A tenant that
    is already there keeps its entry: its region, and a purged tenant stays purged."""
    row = await conn.fetchrow(
        "INSERT INTO tenant_directory (tenant_id, region, country, onboarded_at)"
        f" VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING RETURNING {_COLUMNS}",
        tenant, region, country, now)
    if row is not None:
        return _entry(row), True
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tenant_directory WHERE tenant_id = $1",
                              tenant)
    assert row is not None  # the INSERT met this row (ON CONFLICT); entries are never deleted
    return _entry(row), False


async def mark_retention(conn: Connection | asyncpg.Pool, tenant: uuid.UUID,
                         ended_at: dt.datetime, read_only_until: dt.datetime,
                         purge_at: dt.datetime) -> None:
    await conn.execute(
        "UPDATE tenant_directory SET state = 'retention', ended_at = $2, read_only_until = $3,"
        " purge_at = $4 WHERE tenant_id = $1 AND state = 'active'",
        tenant, ended_at, read_only_until, purge_at)


async def mark_purged(conn: Connection | asyncpg.Pool, tenant: uuid.UUID,
                      now: dt.datetime) -> None:
    await conn.execute(
        "UPDATE tenant_directory SET state = 'purged', purged_at = COALESCE(purged_at, $2)"
        " WHERE tenant_id = $1", tenant, now)


class RegionCache:
    """tenant -> region, which never changes once a tenant is onboarded: asked of the
    directory on a miss, kept for the life of the process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._region: dict[uuid.UUID, str] = {}

    async def regions_of(self, tenants: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        wanted = set(tenants)
        missing = [t for t in wanted if t not in self._region]
        if missing:
            for tenant, entry in (await entries(self._pool, missing)).items():
                self._region[tenant] = entry.region
        return {t: self._region[t] for t in wanted if t in self._region}
