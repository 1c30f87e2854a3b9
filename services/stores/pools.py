"""Connection pools to every region store and to the CM database, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from mdmbus.regions import CM_DATABASE, REGIONS, region_database
from mdmbus.settings import Settings
from mdmbus.services.stores.schema import ensure_cm_schema, ensure_region_schema

__all__ = ["Stores"]


@dataclass
class Stores:
    """One pool per region plus the CM pool; ``start`` also applies the schemas."""

    settings: Settings
    regions: dict[str, asyncpg.Pool] = field(default_factory=dict)
    cm: asyncpg.Pool | None = None

    async def start(self, *, cm: bool = False, min_size: int = 1, max_size: int = 4) -> "Stores":
        """Opens every pool; on failure closes what it opened, so a caller may retry."""
        try:
            return await self._open(cm, min_size, max_size)
        except BaseException:
            await self.close()
            raise

    async def _open(self, cm: bool, min_size: int, max_size: int) -> "Stores":
        for region in REGIONS:
            pool = await asyncpg.create_pool(self.settings.pg_dsn(region_database(region)),
                                             min_size=min_size, max_size=max_size)
            async with pool.acquire() as conn:
                await ensure_region_schema(conn)
            self.regions[region] = pool
        if cm:
            self.cm = await asyncpg.create_pool(self.settings.pg_dsn(CM_DATABASE),
                                                min_size=min_size, max_size=max_size)
            async with self.cm.acquire() as conn:
                await ensure_cm_schema(conn)
        return self

    def region(self, region: str) -> asyncpg.Pool:
        return self.regions[region]

    async def close(self) -> None:
        for pool in list(self.regions.values()) + ([self.cm] if self.cm else []):
            await pool.close()
        self.regions.clear()
        self.cm = None
