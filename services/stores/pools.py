"""Connection pools to the region stores, the tenant directory and the CM database: one
``Stores`` per process, opened for the regions and databases its job needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import asyncpg

from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.settings import Settings

__all__ = ["Stores", "open_pool"]


async def open_pool(settings: Settings, database: str, *, min_size: int = 1, max_size: int = 4,
                    application: str = "mdmbus") -> asyncpg.Pool:
    """A pool to ``database``; ``application`` names the process in pg_stat_activity."""
    return await asyncpg.create_pool(settings.pg_dsn(database), min_size=min_size,
                                     max_size=max_size,
                                     server_settings={"application_name": application[:63]})


@dataclass
class Stores:
    """The pools a process holds. ``start`` opens them; a failure closes what was opened, so
    the caller may retry."""

    settings: Settings
    application: str = "mdmbus"
    regions: dict[str, asyncpg.Pool] = field(default_factory=dict)
    directory: asyncpg.Pool | None = None
    cm: asyncpg.Pool | None = None

    async def start(self, regions: Iterable[str] = REGIONS, *, directory: bool = True,
                    cm: bool = False, min_size: int = 1, max_size: int = 4) -> "Stores":
        try:
            for region in regions:
                self.regions[region] = await open_pool(
                    self.settings, region_database(region), min_size=min_size,
                    max_size=max_size, application=self.application)
            if directory:
                self.directory = await open_pool(self.settings, DIRECTORY_DATABASE,
                                                 min_size=1, max_size=max_size,
                                                 application=self.application)
            if cm:
                self.cm = await open_pool(self.settings, CM_DATABASE, min_size=min_size,
                                          max_size=max_size, application=self.application)
            return self
        except BaseException:
            await self.close()
            raise

    def region(self, region: str) -> asyncpg.Pool:
        try:
            return self.regions[region]
        except KeyError:
            raise KeyError(f"this process holds no pool for region {region!r} "
                           f"(it serves {', '.join(self.regions) or 'none'})") from None

    async def close(self) -> None:
        for pool in [*self.regions.values(), self.directory, self.cm]:
            if pool is not None:
                await pool.close()
        self.regions.clear()
        self.directory = self.cm = None
