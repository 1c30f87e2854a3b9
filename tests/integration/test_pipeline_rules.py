"""Every rule of docs/design.md section 2, end to end on the real broker, databases and
gateways.

The pipeline, sweeper, gateway and CM connector run as real processes on a clock running
500,000 times faster than real time: 90 days pass in 15.6 s, 30 more in 5.2 s.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from mdmbus.regions import REGIONS, country_regions
from mdmbus.services.connector.client import GatewayError
from tests.conftest import wait_for
from tests.integration.harness import ALL_PROCESSES, Workload

pytestmark = pytest.mark.integration

PROCESSES = ALL_PROCESSES

SPEED = 500_000.0
DAY = 86_400.0


async def _has(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def test_residency_each_tenants_rows_live_only_in_its_region(work):
    """Tenants of countries all over the table: each one's rows in its region only, and its
    directory entry says so."""
    rng = __import__("random").Random(uuid.uuid4().int)
    table = country_regions()
    countries = [rng.choice(sorted(c for c, r in table.items() if r == region))
                 for region in REGIONS for _ in range(4)]
    tenants = {}
    for country in countries:
        tenant = await work.onboard(table[country], country)
        tenants[tenant] = table[country]
    await wait_for(lambda: _all_onboarded(work, tenants), 60, "tenants onboarded")
    records: dict[str, list[str]] = {t: [] for t in tenants}
    for tenant in tenants:
        for kind in ("U1", "U4", "U9", "U12"):
            records[tenant].append((await work.produce(kind, tenant))["envelope"]["record_id"])
        records[tenant].append((await work.produce("inventory_cache", tenant,
                                                   device_id=work.factory.uuid()))
                               ["envelope"]["record_id"])

    async def all_stored() -> bool:
        for tenant, region in tenants.items():
            if not await _has(work, region, records[tenant]):
                return False
        return True
    await wait_for(all_stored, 90, "every record in its region's store")

    for tenant, region in tenants.items():
        assert await work.directory.fetchval(
            "SELECT region FROM tenant_directory WHERE tenant_id = $1", uuid.UUID(tenant)) == region
        where = await work.anywhere(records[tenant])
        for other in REGIONS:
            assert where[other] == (set(records[tenant]) if other == region else set()), \
                f"tenant of {region} has rows in {other}"
            count = await work.region_pool(other).fetchval(
                "SELECT count(*) FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant))
            assert count == (1 if other == region else 0)


async def _all_onboarded(work: Workload, tenants: dict[str, str]) -> bool:
    return all([await work.tenant_region(t) == r for t, r in tenants.items()])


async def test_an_onboarded_tenant_keeps_its_region(work):
    tenant = await work.onboarded("ap")
    # The same tenant onboarded again with a German country: refused, the tenant stays in ap.
    meta = await work.send("tenant_onboarded", work.make("tenant_onboarded", tenant, country="DE"))
    refusal = await wait_for(lambda: work.directory.fetchrow(
        "SELECT reason FROM lifecycle_refusals WHERE source_topic = $1 AND source_partition = $2"
        " AND source_offset = $3", meta.topic, meta.partition, meta.offset), 30, "the refusal")
    assert refusal["reason"] == "already_onboarded"
    assert await work.tenant_region(tenant) == "ap"
    assert await work.directory.fetchval("SELECT region FROM tenant_directory WHERE tenant_id = $1",
                                         uuid.UUID(tenant)) == "ap"


async def test_an_unknown_country_onboards_nowhere(work):
    tenant = work.factory.uuid()
    meta = await work.send("tenant_onboarded", work.make("tenant_onboarded", tenant, country="ZZ"))
    refusal = await wait_for(lambda: work.directory.fetchrow(
        "SELECT reason FROM lifecycle_refusals WHERE source_topic = $1 AND source_partition = $2"
        " AND source_offset = $3", meta.topic, meta.partition, meta.offset), 30, "the refusal")
    assert refusal["reason"] == "unknown_country"
    assert await work.tenant_region(tenant) is None and await work.directory_state(tenant) is None


async def test_records_of_a_tenant_never_onboarded_are_stored_nowhere(work):
    stranger = work.factory.uuid()
    record = work.make("U9", stranger)
    meta = await work.send("U9", record, region="eu")
    letter = await wait_for(lambda: work.dead_letter("eu", meta), 60, "the dead letter")
    assert letter["reason"] == "tenant_not_onboarded"
    assert letter["body"] == work.contract.codec.encode("U9", record), "its body kept for operators"
    assert str(letter["tenant_id"]) == stranger
    assert await work.anywhere([record["envelope"]["record_id"]]) == {r: set() for r in REGIONS}


async def test_a_record_in_another_regions_topic_is_refused_and_not_kept_there(work):
    tenant = await work.onboarded("eu")
    record = work.make("U9", tenant)
    meta = await work.send("U9", record, region="na")
    letter = await wait_for(lambda: work.dead_letter("na", meta), 60, "the dead letter in na")
    assert letter["reason"] == "wrong_region"
    assert letter["body"] is None, "the record's body is not kept in a region it does not live in"
    assert await work.anywhere([record["envelope"]["record_id"]]) == {r: set() for r in REGIONS}


async def test_session_commands_are_deleted_at_session_expiry(work):
    region = "na"
    tenant = await work.onboarded(region)
    device, session = work.factory.uuid(), work.factory.uuid()
    expires_ms = work.clock.now_ms() + int(6 * SPEED * 1000)  # six real seconds from now
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=expires_ms)
    await wait_for(lambda: work.region_pool(region).fetchval(
        "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device)), 60,
        "session opened")
    ids = [(await work.produce("device_command", tenant, device_id=device, session_id=session))
           ["envelope"]["record_id"] for _ in range(5)]
    await wait_for(lambda: _has(work, region, ids), 60, "commands stored while the session is active")
    deadlines = await work.region_pool(region).fetch(
        "SELECT deadline FROM records WHERE record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    assert [int(r["deadline"].timestamp() * 1000) for r in deadlines] == [expires_ms] * 5

    await wait_for(lambda: _gone(work, region, ids), 60, "commands deleted after the session expired")
    real_expiry = work.clock.real_time_of(expires_ms / 1000)
    # Every one of the five commands audited, exactly once, after its deadline and within 5 s.
    assert Counter(await work.audited(region, "session_expiry", ids)) == Counter(ids)
    audit = await work.region_pool(region).fetch(
        "SELECT deleted_at_real, max_lag_s FROM deletion_audit WHERE rule = 'session_expiry'"
        " AND record_ids && $1::uuid[]", [uuid.UUID(i) for i in ids])
    for row in audit:
        assert row["deleted_at_real"].timestamp() >= real_expiry, "deleted before expiry"
        assert row["max_lag_s"] < 5.0  # the source allows an hour; mdmbus, seconds
    assert not await work.region_pool(region).fetchval(
        "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device))


async def _gone(work: Workload, region: str, ids: list[str]) -> bool:
    return not await work.stored(region, ids)


async def test_ending_a_session_deletes_its_commands_at_once(work):
    region = "ap"
    tenant = await work.onboarded(region)
    device, session = work.factory.uuid(), work.factory.uuid()
    far = work.clock.now_ms() + int(3600 * SPEED * 1000)  # an hour of real time away
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=far)
    ids = [(await work.produce("device_command", tenant, device_id=device, session_id=session))
           ["envelope"]["record_id"] for _ in range(3)]
    await wait_for(lambda: _has(work, region, ids), 60, "commands stored")
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="END", expires_at=far)
    await wait_for(lambda: _gone(work, region, ids), 30, "commands deleted once the session ended")
    assert Counter(await work.audited(region, "session_expiry", ids)) == Counter(ids)


async def test_inventory_cache_is_removed_when_the_device_unenrolls(work):
    region = "eu"
    tenant = await work.onboarded(region)
    device, other = work.factory.uuid(), work.factory.uuid()
    cached = [(await work.produce("inventory_cache", tenant, device_id=device))["envelope"]["record_id"]
              for _ in range(3)]
    kept = (await work.produce("inventory_cache", tenant, device_id=other))["envelope"]["record_id"]
    await wait_for(lambda: _has(work, region, cached + [kept]), 60, "inventory cached")
    await work.produce("device_unenrolled", tenant, device_id=device)
    await wait_for(lambda: _gone(work, region, cached), 60, "the un-enrolled device's cache removed")
    assert await work.stored(region, [kept]) == {kept}, "another device's cache was touched"
    assert Counter(await work.audited(region, "inventory_cache_removal", cached)) == Counter(cached)


async def test_retention_lifecycle_read_only_then_purged(work):
    """Through the gateway: export while active and in retention, upload refused in
    retention, everything gone (and export 410) after the purge."""
    region = "ap"
    tenant = await work.onboarded(region)
    device = work.factory.uuid()
    ids = [(await work.produce(k, tenant, device_id=device))["envelope"]["record_id"]
           for k in ("U1", "U9", "U11", "U5", "inventory_cache")]
    await wait_for(lambda: _has(work, region, ids), 60, "tenant data stored")
    admin = work.client(tenant, "admin")
    assert {line["record"]["envelope"]["record_id"] async for line in admin.export()} == set(ids)

    await work.produce("tenant_subscription_ended", tenant)
    status = await wait_for(lambda: _state(admin, "retention"), 30, "tenant in retention")
    row = await work.region_pool(region).fetchrow(
        "SELECT subscription_ended_at, read_only_until, purge_at FROM tenants WHERE tenant_id = $1",
        uuid.UUID(tenant))
    assert (row["read_only_until"] - row["subscription_ended_at"]).total_seconds() == 90 * DAY
    assert (row["purge_at"] - row["read_only_until"]).total_seconds() == 30 * DAY
    assert status["purge_at"] == row["purge_at"].isoformat()

    # Read-only: an upload is refused at the door, a record on the topic is a dead letter.
    late = work.make("U2", tenant)
    with pytest.raises(GatewayError) as refused:
        await work.client(tenant, "connector").upload(
            [{"kind": "U2", "record": _json(work, "U2", late)}])
    assert (refused.value.status, refused.value.code) == (403, "tenant_in_retention")
    meta = await work.send("U2", work.make("U2", tenant))
    letter = await wait_for(lambda: work.dead_letter(region, meta), 30, "the dead letter")
    assert letter["reason"] == "tenant_in_retention"
    assert {line["record"]["envelope"]["record_id"] async for line in admin.export()} == set(ids)

    # 90 + 30 days later (about 21 real seconds), nothing of the tenant is left anywhere.
    async def purged() -> bool:
        return await work.directory_state(tenant) == "purged" and \
            await work.tenant_region(tenant) is None and \
            await work.anywhere(ids) == {r: set() for r in REGIONS}
    await wait_for(purged, 60, "the tenant purged")
    for r in REGIONS:
        assert not await work.region_pool(r).fetchval(
            "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(tenant))
        assert not await work.region_pool(r).fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant_id = $1", uuid.UUID(tenant))
    with pytest.raises(GatewayError) as gone:
        [line async for line in admin.export()]
    assert gone.value.status == 410
    audit = await work.region_pool(region).fetch(
        "SELECT category, row_count, deleted_at FROM deletion_audit WHERE rule = 'retention_purge'"
        " AND tenant_id = $1", uuid.UUID(tenant))
    assert sum(r["row_count"] for r in audit if r["category"] in ("upload", "inventory_cache")) \
        == len(ids)
    assert all(r["deleted_at"] >= row["purge_at"] for r in audit), "purged before its day"


async def _state(client, state: str) -> dict | None:
    status = await client.status()
    return status if status["state"] == state else None


def _json(work: Workload, kind: str, record: dict) -> dict:
    from mdmbus.contract import to_json
    return to_json(work.contract.spec(kind).expanded, record)


async def test_a_deletion_request_deletes_at_once_with_an_erasure_receipt(work):
    region = "na"
    tenant = await work.onboarded(region)
    device = work.factory.uuid()
    ids = [(await work.produce(k, tenant, device_id=device))["envelope"]["record_id"]
           for k in ("U3", "U7", "U13", "U14", "inventory_cache")]
    await wait_for(lambda: _has(work, region, ids), 60, "tenant data stored")
    receipt = await work.client(tenant, "admin").delete()
    # At once: long before any retention period could have passed (90 days = 15.6 s here).
    assert receipt["status"] == "completed"
    assert await work.directory_state(tenant) == "purged"
    assert await work.anywhere(ids) == {r: set() for r in REGIONS}
    # The receipt holds ids and counts, never data, and matches the audit.
    audit = await work.region_pool(region).fetch(
        "SELECT category, row_count, record_ids FROM deletion_audit"
        " WHERE rule = 'deletion_request' AND tenant_id = $1", uuid.UUID(tenant))
    assert receipt["deleted"] == {c: sum(r["row_count"] for r in audit if r["category"] == c)
                                  for c in {r["category"] for r in audit}}
    assert sorted(receipt["record_ids"]["upload"] + receipt["record_ids"]["inventory_cache"]) \
        == sorted(ids)
    again = await work.client(tenant, "auditor").receipt(receipt["receipt_id"])
    assert again == receipt
    assert set(str(v) for v in receipt) == {"receipt_id", "tenant_id", "requested_at",
                                            "completed_at", "status", "deleted", "record_ids"}
