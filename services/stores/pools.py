"""Connection pools to the region stores, the tenant directory and the CM database: one
``Stores`` per process, opened for the regions and databases its job needs, each as the
process's own role in that region (mdmbus/identities.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
import uuid
from typing import Iterable, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mdmbus.connections import pg_pool
from mdmbus.identities import role_of
from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.settings import Settings

__all__ = ["Stores", "open_pool", "hold_to_tenant", "Connection"]

#: A connection as the stores' functions receive it: opened on its own (asyncpg.connect) or
#: lent by a pool (``pool.acquire()``, a proxy that asyncpg's types keep apart).
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


async def open_pool(settings: Settings, database: str, role: str | None, *, min_size: int = 1,
                    max_size: int = 4, application: str = "mdmbus") -> asyncpg.Pool:
    """A pool to ``database`` as ``role`` (None: the provisioning superuser, for operators'
    tools and tests); ``application`` names the process in pg_stat_activity."""
    return await pg_pool(settings, database, role, min_size=min_size, max_size=max_size,
                         application=application)


@dataclass
class Stores:
    """The pools a process holds, as ``service`` ("pipeline", "sweeper", "gateway"; None: the
    superuser). ``start`` opens them; a failure closes what was opened, so the caller may
    retry.

    The directory is reached through each region's own role (``directory_of``): a region's
    services may change only their region's tenants there."""

    settings: Settings
    application: str = "mdmbus"
    service: str | None = None
    regions: dict[str, asyncpg.Pool] = field(default_factory=dict)
    directories: dict[str, asyncpg.Pool] = field(default_factory=dict)
    cm: asyncpg.Pool | None = None

    def _role(self, region: str) -> str | None:
        return None if self.service is None else role_of(self.service, region)

    async def start(self, regions: Iterable[str] = REGIONS, *, directory: bool = True,
                    cm: bool = False, min_size: int = 1, max_size: int = 4) -> "Stores":
        try:
            for region in regions:
                self.regions[region] = await open_pool(
                    self.settings, region_database(region), self._role(region),
                    min_size=min_size, max_size=max_size, application=self.application)
                if directory:
                    self.directories[region] = await open_pool(
                        self.settings, DIRECTORY_DATABASE, self._role(region), min_size=1,
                        max_size=max_size, application=self.application)
            if cm:
                self.cm = await open_pool(
                    self.settings, CM_DATABASE,
                    None if self.service is None else role_of("cm-connector"),
                    min_size=min_size, max_size=max_size, application=self.application)
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

    def directory_of(self, region: str) -> asyncpg.Pool:
        """The directory as ``region``'s service: it reads as its policies allow and writes
        only ``region``'s tenants."""
        try:
            return self.directories[region]
        except KeyError:
            raise KeyError(f"this process holds no directory pool for region {region!r} "
                           f"(it serves {', '.join(self.directories) or 'none'})") from None

    @property
    def directory_pool(self) -> asyncpg.Pool:
        """The directory for reads every region's role may do (the first region's pool)."""
        if not self.directories:
            raise KeyError("this process holds no directory pool")
        return next(iter(self.directories.values()))

    async def close(self) -> None:
        for pool in [*self.regions.values(), *self.directories.values(), self.cm]:
            if pool is not None:
                await pool.close()
        self.regions.clear()
        self.directories.clear()
        self.cm = None


async def hold_to_tenant(conn: Connection, tenant: uuid.UUID) -> None:
    """Holds the session to ``tenant``'s rows: the row-level security policies of
    mdmbus/identities.py (``pg_policies``) read this setting; asyncpg's RESET ALL undoes it
    when the connection goes back to its pool."""
    await conn.execute("SELECT set_config('mdmbus.tenant', $1, false)", str(tenant))
