"""Every rule of docs/design.md section 2, end to end on the real broker and databases.

The pipeline, the CM connector and the sweeper run as real processes on a clock running
500,000 times faster than real time: 90 days pass in 15.6 s, 30 more in 5.2 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest

from mdmbus import topics
from mdmbus.regions import REGIONS
from mdmbus.services.stores.pools import Stores
from mdmbus.services.export import export_tenant
from tests.conftest import wait_for
from tests.integration.harness import Processes, Workload

pytestmark = pytest.mark.integration

SPEED = 500_000.0
DAY = 86_400.0


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    procs = Processes(stack, tmp_path_factory.mktemp("pipeline"), speed=SPEED)
    procs.start()
    yield procs
    procs.stop()


@pytest.fixture
async def work(stack, pipeline):
    async with Workload(stack, pipeline.clock, seed=uuid.uuid4().int) as w:
        yield w
    pipeline.assert_alive()


async def _onboarded(work: Workload, region: str) -> str:
    tenant = await work.onboard(region)
    await wait_for(lambda: work.tenant_region(tenant), 60, f"tenant onboarded in {region}")
    return tenant


async def test_residency_each_tenants_rows_live_only_in_its_region(work):
    tenants = {}
    for i in range(12):
        region = REGIONS[i % 3]
        tenants[await _onboarded(work, region)] = region
    records: dict[str, list[str]] = {t: [] for t in tenants}
    for tenant in tenants:
        for kind in ("U1", "U4", "U9", "U12", "inventory_cache"):
            rec = await work.produce(kind, tenant)
            records[tenant].append(rec["envelope"]["record_id"])

    async def all_stored() -> bool:
        for tenant, region in tenants.items():
            if len(await work.stored(region, records[tenant])) != len(records[tenant]):
                return False
        return True
    await wait_for(all_stored, 90, "every record in its region's store")

    for tenant, region in tenants.items():
        assert await work.tenant_region(tenant) == region
        where = await work.anywhere(records[tenant])
        for other in REGIONS:
            assert where[other] == (set(records[tenant]) if other == region else set()), \
                f"tenant of {region} has rows in {other}"
            count = await work.region_pool(other).fetchval(
                "SELECT count(*) FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant))
            assert count == (1 if other == region else 0)


async def test_records_of_a_tenant_never_onboarded_are_stored_nowhere(work):
    start = await work.end_offsets(topics.DEAD_LETTER)
    stranger = work.factory.uuid()
    rec = await work.produce("U9", stranger)
    letters = await work.dead_letters(start, want={rec["envelope"]["record_id"]})
    mine = [m for m in letters if m.value and rec["envelope"]["record_id"] in
            str(work.contract.codec.decode(m.value).record["envelope"]["record_id"])]
    assert mine and dict(mine[0].headers)["mdmbus.reason"] == b"tenant_not_onboarded"
    assert (await work.anywhere([rec["envelope"]["record_id"]])) == {r: set() for r in REGIONS}


async def test_delete_after_download_only_after_cm_commit(work, pipeline):
    region = "eu"
    tenant = await _onboarded(work, region)
    pipeline.kill("cm-connector")
    try:
        relayed = [await work.produce(kind, tenant, device_id=work.factory.uuid())
                   for kind in ("R1", "R2", "R3", "R4", "R5", "R6")]
        ids = [r["envelope"]["record_id"] for r in relayed]
        # With CM down, the cloud copies are stored and stay: nothing is deleted before CM has it.
        marker = (await work.produce("U1", tenant))["envelope"]["record_id"]
        await wait_for(lambda: _has(work, region, ids + [marker]), 60, "cloud copies stored")
        assert await work.cm.fetchval("SELECT count(*) FROM relayed_records WHERE"
                                      " record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]) == 0
        assert await work.stored(region, ids) == set(ids)
    finally:
        pipeline.start("cm-connector")

    async def gone_from_cloud() -> bool:
        return not await work.stored(region, ids)
    await wait_for(gone_from_cloud, 60, "cloud copies deleted after the acknowledgements")
    cm_rows = await work.cm.fetch("SELECT record_id, received_at, body FROM relayed_records"
                                  " WHERE record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    assert {str(r["record_id"]) for r in cm_rows} == set(ids)
    received = {str(r["record_id"]): r["received_at"] for r in cm_rows}
    audit = await work.region_pool(region).fetch(
        "SELECT record_ids, deleted_at_real FROM deletion_audit WHERE rule = 'delete_after_download'"
        " AND record_ids && $1::uuid[]", [uuid.UUID(i) for i in ids])
    # An audit row may cover other tenants' records deleted in the same batch.
    deleted_at = {str(rid): row["deleted_at_real"] for row in audit for rid in row["record_ids"]
                  if str(rid) in ids}
    assert set(deleted_at) == set(ids), "every deletion is audited"
    for rid in ids:
        assert deleted_at[rid] >= received[rid], "deleted before CM had it"
    # The data is in CM and nowhere in the cloud; the decoded CM copy is the record sent.
    for row in cm_rows:
        sent = next(r for r in relayed if r["envelope"]["record_id"] == str(row["record_id"]))
        assert work.contract.codec.decode(row["body"]).record["envelope"]["record_id"] == \
            uuid.UUID(sent["envelope"]["record_id"])
    assert await work.anywhere(ids) == {r: set() for r in REGIONS}


async def _has(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def test_session_commands_are_deleted_at_session_expiry(work, pipeline):
    region = "na"
    tenant = await _onboarded(work, region)
    device = work.factory.uuid()
    session = work.factory.uuid()
    expires_ms = work.clock.now_ms() + int(6 * SPEED * 1000)  # six real seconds from now
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=expires_ms)
    await wait_for(lambda: work.region_pool(region).fetchval(
        "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device)), 60,
        "session opened")
    commands = [await work.produce("device_command", tenant, device_id=device, session_id=session)
                for _ in range(5)]
    ids = [c["envelope"]["record_id"] for c in commands]
    await wait_for(lambda: _has(work, region, ids), 60, "commands stored while the session is active")
    deadlines = await work.region_pool(region).fetch(
        "SELECT deadline FROM records WHERE record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    assert {int(r["deadline"].timestamp() * 1000) for r in deadlines} == {expires_ms}

    async def gone() -> bool:
        return not await work.stored(region, ids)
    await wait_for(gone, 60, "commands deleted after the session expired")
    real_expiry = work.clock.real_time_of(expires_ms / 1000)
    audit = await work.region_pool(region).fetch(
        "SELECT deleted_at_real, max_lag_s FROM deletion_audit WHERE rule = 'session_expiry'"
        " AND record_ids && $1::uuid[]", [uuid.UUID(i) for i in ids])
    assert sum(len(set(ids)) for _ in [0]) == 5 and audit
    for row in audit:
        assert row["deleted_at_real"].timestamp() >= real_expiry, "deleted before expiry"
        # The source allows an hour; mdmbus deletes within seconds of the deadline.
        assert row["max_lag_s"] < 5.0
    assert not await work.region_pool(region).fetchval(
        "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device))


async def test_ending_a_session_deletes_its_commands_at_once(work):
    region = "ap"
    tenant = await _onboarded(work, region)
    device, session = work.factory.uuid(), work.factory.uuid()
    far = work.clock.now_ms() + int(3600 * SPEED * 1000)  # an hour of real time away
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=far)
    ids = [(await work.produce("device_command", tenant, device_id=device, session_id=session))
           ["envelope"]["record_id"] for _ in range(3)]
    await wait_for(lambda: _has(work, region, ids), 60, "commands stored")
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="END", expires_at=far)

    async def gone() -> bool:
        return not await work.stored(region, ids)
    await wait_for(gone, 30, "commands deleted once the session ended")


async def test_inventory_cache_is_removed_when_the_device_unenrolls(work):
    region = "eu"
    tenant = await _onboarded(work, region)
    device, other = work.factory.uuid(), work.factory.uuid()
    cached = [(await work.produce("inventory_cache", tenant, device_id=device))["envelope"]["record_id"]
              for _ in range(3)]
    kept = (await work.produce("inventory_cache", tenant, device_id=other))["envelope"]["record_id"]
    await wait_for(lambda: _has(work, region, cached + [kept]), 60, "inventory cached")
    await work.produce("device_unenrolled", tenant, device_id=device)

    async def removed() -> bool:
        return not await work.stored(region, cached)
    await wait_for(removed, 60, "the un-enrolled device's cache removed")
    assert await work.stored(region, [kept]) == {kept}, "another device's cache was touched"
    audited = await work.region_pool(region).fetchval(
        "SELECT sum(row_count) FROM deletion_audit WHERE rule = 'inventory_cache_removal'"
        " AND tenant_id = $1", uuid.UUID(tenant))
    assert audited == 3


async def test_retention_lifecycle_read_only_then_purged(work, stack):
    region = "ap"
    tenant = await _onboarded(work, region)
    device = work.factory.uuid()
    ids = [(await work.produce(k, tenant, device_id=device))["envelope"]["record_id"]
           for k in ("U1", "U9", "U11", "U5", "inventory_cache")]
    await wait_for(lambda: _has(work, region, ids), 60, "tenant data stored")

    await work.produce("tenant_subscription_ended", tenant)
    await wait_for(lambda: work.region_pool(region).fetchval(
        "SELECT state = 'retention' FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant)), 30,
        "tenant in retention")
    row = await work.region_pool(region).fetchrow(
        "SELECT subscription_ended_at, read_only_until, purge_at FROM tenants WHERE tenant_id = $1",
        uuid.UUID(tenant))
    assert (row["read_only_until"] - row["subscription_ended_at"]).total_seconds() == 90 * DAY
    assert (row["purge_at"] - row["read_only_until"]).total_seconds() == 30 * DAY

    # Read-only: a new write goes to the dead letters with its reason; reads/exports still work.
    start = await work.end_offsets(topics.DEAD_LETTER)
    late = await work.produce("U2", tenant)
    letters = await work.dead_letters(start, want={late["envelope"]["record_id"]})
    reasons = {dict(m.headers)["mdmbus.reason"] for m in letters
               if late["envelope"]["record_id"] in work._ids_in([m])}
    assert reasons == {b"tenant_in_retention"}
    stores = await Stores(stack).start()
    try:
        exported = [rec async for _, rec in export_tenant(stores, uuid.UUID(tenant))]
    finally:
        await stores.close()
    assert {str(r["envelope"]["record_id"]) for r in exported} == set(ids)
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdmbus", "export", "--tenant", tenant,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert {line["record"]["envelope"]["record_id"] for line in lines} == set(ids)

    # 90 + 30 days later (about 21 real seconds), nothing of the tenant is left anywhere.
    async def purged() -> bool:
        return await work.tenant_region(tenant) is None and \
            await work.anywhere(ids) == {r: set() for r in REGIONS}
    await wait_for(purged, 60, "the tenant purged")
    for r in REGIONS:
        assert not await work.region_pool(r).fetchval(
            "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(tenant))
    audit = await work.region_pool(region).fetch(
        "SELECT category, row_count, deleted_at FROM deletion_audit WHERE rule = 'retention_purge'"
        " AND tenant_id = $1", uuid.UUID(tenant))
    assert sum(r["row_count"] for r in audit if r["category"] != "tenant") == len(ids)
    assert all(r["deleted_at"] >= row["purge_at"] for r in audit), "purged before its day"


async def test_cancellation_with_deletion_request_deletes_at_once(work):
    region = "na"
    tenant = await _onboarded(work, region)
    device = work.factory.uuid()
    ids = [(await work.produce(k, tenant, device_id=device))["envelope"]["record_id"]
           for k in ("U3", "U7", "U13", "U14", "inventory_cache")]
    await wait_for(lambda: _has(work, region, ids), 60, "tenant data stored")
    await work.produce("tenant_subscription_cancelled", tenant, deletion_requested=True)

    async def deleted() -> bool:
        return await work.tenant_region(tenant) is None and not await work.stored(region, ids, False)
    # At once: long before any retention period could have passed (90 days = 15.6 s here).
    await wait_for(deleted, 5, "deletion on request")
    audit = await work.region_pool(region).fetchval(
        "SELECT sum(row_count) FROM deletion_audit WHERE rule = 'deletion_request'"
        " AND tenant_id = $1 AND category <> 'tenant'", uuid.UUID(tenant))
    assert audit == len(ids)
