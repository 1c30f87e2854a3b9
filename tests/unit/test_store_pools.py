"""Which database each process's pools reach, as which role (services/stores/pools.py): the
table below is written by hand (the oracle); a pool opened as another region's role, as the
superuser, or to another region's database fails here. No server: ``open_pool`` is replaced
by a recorder (a unit test; tests/integration reads the roles back from PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mdmbus.services.stores import pools
from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings


class FakePool:
    def __init__(self, database: str, role: str | None, opened: list) -> None:
        self.database, self.role, self.closed = database, role, False
        opened.append(self)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch) -> list[FakePool]:
    opened: list[FakePool] = []

    async def open_pool(settings, database, role, *, min_size=1, max_size=4,
                        application="mdmbus"):
        if database == "mdmbus_fail":
            raise OSError("refused")
        return FakePool(database, role, opened)
    monkeypatch.setattr(pools, "open_pool", open_pool)
    return opened


def test_a_service_reaches_each_region_as_that_regions_role(opened):
    stores = asyncio.run(Stores(Settings(), service="pipeline").start(("eu", "ap"), cm=True))
    assert [(p.database, p.role) for p in opened] == [
        ("mdmbus_eu", "mdmbus_eu_pipeline"), ("mdmbus_directory", "mdmbus_eu_pipeline"),
        ("mdmbus_ap", "mdmbus_ap_pipeline"), ("mdmbus_directory", "mdmbus_ap_pipeline"),
        ("mdmbus_cm", "mdmbus_cm_connector")]
    assert stores.region("eu").database == "mdmbus_eu"
    assert stores.region("ap").role == "mdmbus_ap_pipeline"
    assert stores.directory_of("ap").role == "mdmbus_ap_pipeline"
    assert stores.directory_pool.role == "mdmbus_eu_pipeline"  # the first region's
    with pytest.raises(KeyError, match="no pool for region 'na' \\(it serves eu, ap\\)"):
        stores.region("na")
    with pytest.raises(KeyError, match="no directory pool for region 'na' \\(it serves eu, ap\\)"):
        stores.directory_of("na")
    asyncio.run(stores.close())
    assert all(p.closed for p in opened)
    assert (stores.regions, stores.directories, stores.cm) == ({}, {}, None)


def test_without_a_service_the_pools_are_the_superusers(opened):
    stores = asyncio.run(Stores(Settings()).start(("na",), directory=False, cm=True))
    assert [(p.database, p.role) for p in opened] == [("mdmbus_na", None), ("mdmbus_cm", None)]
    with pytest.raises(KeyError, match="^'this process holds no directory pool'$"):
        _ = stores.directory_pool
    with pytest.raises(KeyError, match="\\(it serves none\\)"):
        stores.directory_of("na")
    asyncio.run(stores.close())


def test_a_failed_start_closes_what_it_opened(opened, monkeypatch):
    monkeypatch.setattr(pools, "CM_DATABASE", "mdmbus_fail")
    stores = Stores(Settings(), service="sweeper")
    with pytest.raises(OSError, match="refused"):
        asyncio.run(stores.start(("eu",), cm=True))
    assert [(p.database, p.role, p.closed) for p in opened] == [
        ("mdmbus_eu", "mdmbus_eu_sweeper", True),
        ("mdmbus_directory", "mdmbus_eu_sweeper", True)]
    assert stores.regions == {} and stores.directories == {}


def test_open_pool_passes_its_database_role_sizes_and_name_on(monkeypatch):
    seen = []

    settings = Settings()

    async def pg_pool(given, database, role, **kw):
        assert given is settings
        seen.append((database, role, kw))
        return "pool"
    monkeypatch.setattr(pools, "pg_pool", pg_pool)
    assert asyncio.run(pools.open_pool(settings, "mdmbus_eu", "mdmbus_eu_gateway", min_size=2,
                                       max_size=7, application="mdmbus-gw")) == "pool"
    assert asyncio.run(pools.open_pool(settings, "mdmbus_na", None)) == "pool"
    assert seen == [
        ("mdmbus_eu", "mdmbus_eu_gateway", {"min_size": 2, "max_size": 7,
                                            "application": "mdmbus-gw"}),
        ("mdmbus_na", None, {"min_size": 1, "max_size": 4, "application": "mdmbus"})]


def test_a_gateway_session_is_held_to_its_callers_tenant():
    """The setting the row-level security policies read (mdmbus.tenant, rights_table.POLICIES),
    set for the session (not the transaction: is_local false), to the tenant's id as text."""
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        async def execute(self, *args):
            self.calls.append(args)

    conn = Recorder()
    tenant = uuid.UUID("6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
    asyncio.run(pools.hold_to_tenant(conn, tenant))
    assert conn.calls == [("SELECT set_config('mdmbus.tenant', $1, false)",
                           "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")]
