"""No tenant reaches past itself through the ids it chooses, and no regional credential reaches
past its region through the lifecycle (docs/design.md rules 1, 2, 4 and 8).

- A record is (tenant, record id): record ids are the producers' choice, so two tenants may
  pick the same one, in one region or in two, and each keeps its record in the region store,
  in CM's database, and through delete-after-download.
- The CM connector acknowledges only what CM holds with the bytes it downloaded: an id CM
  already holds for the tenant with other bytes is a conflict, and the cloud keeps its copy.
- A region's gateway writes deletion requests to its region's topic only; its pipeline acts
  on them only for the region's tenants and on nothing but deletion requests; no regional
  credential writes the global lifecycle topic.

The pipeline, gateway and sweeper of every region run as real processes (real time); the
tests that need CM start its connector.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from mdmbus.connections import kafka_options
from mdmbus.contract import to_json
from mdmbus.identities import principal_of
from mdmbus.regions import REGIONS
from mdmbus.services.stores.sealing import open_record
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload

pytestmark = pytest.mark.integration

PROCESSES = [("pipeline", "all"), ("gateway", "all"), ("sweeper", "all")]

CONNECTOR = "cm-connector"
LIFECYCLE_KINDS = ("tenant_onboarded", "tenant_subscription_ended",
                   "tenant_subscription_cancelled", "tenant_deletion_requested")


async def _row(work: Workload, region: str, tenant: str, record_id: str) -> dict | None:
    """Whether the region store holds data for (tenant, id), and its body opened with the
    region's keyring (bodies are sealed in the store); None: no row."""
    row = await work.region_pool(region).fetchrow(
        "SELECT tenant_id, record_id, has_body, body, wrapped_key, kek_id FROM records"
        " WHERE tenant_id = $1 AND record_id = $2", uuid.UUID(tenant), uuid.UUID(record_id))
    if row is None:
        return None
    return {"has_body": row["has_body"], "body": open_record(row) if row["body"] is not None else None}


async def _body(work: Workload, region: str, tenant: str, record_id: str) -> bytes | None:
    """The body the region store holds for (tenant, id), opened; None: no row or no body."""
    row = await _row(work, region, tenant, record_id)
    return None if row is None else row["body"]


async def _cm_body(work: Workload, tenant: str, record_id: str) -> bytes | None:
    return await work.cm.fetchval(
        "SELECT body FROM relayed_records WHERE tenant_id = $1 AND record_id = $2",
        uuid.UUID(tenant), uuid.UUID(record_id))


def _with_id(record: dict, record_id: str) -> dict:
    record["envelope"]["record_id"] = record_id
    return record


async def test_an_upload_with_another_tenants_record_id_is_stored_for_its_own_tenant(work):
    """Tenant B uploads, through the gateway, a record whose id tenant A already used: the
    gateway answers accepted, and B's record is then stored with B's bytes, A's untouched."""
    a, b = await work.onboarded("eu"), await work.onboarded("eu")
    rid = work.factory.uuid()
    first = _with_id(work.make("U12", a), rid)
    await work.send("U12", first)
    a_body = work.contract.codec.encode("U12", first)
    await wait_for(lambda: _body(work, "eu", a, rid), 60, "A's record stored")

    second = _with_id(work.make("U12", b), rid)
    second["build_version"] = "9.9.9999.1"
    answer = await work.client(b, "connector").upload(
        [{"kind": "U12", "record": to_json(work.contract.spec("U12").expanded, second)}])
    assert [x["record_id"] for x in answer["accepted"]] == [rid], answer
    b_body = await wait_for(lambda: _body(work, "eu", b, rid), 60, "B's record stored")
    assert work.contract.codec.decode(b_body)[1]["build_version"] == "9.9.9999.1"
    assert await _body(work, "eu", a, rid) == a_body


async def test_relay_records_sharing_an_id_across_regions_both_reach_cm(work, system):
    """Two tenants of two regions relay a record with the same id: CM's database holds both,
    each with its own bytes, and only then is each cloud copy deleted."""
    a, n = await work.onboarded("eu"), await work.onboarded("na")
    rid = work.factory.uuid()
    sent = {}
    for tenant in (a, n):
        record = _with_id(work.make("R1", tenant, device_id=work.factory.uuid()), rid)
        await work.send("R1", record)
        sent[tenant] = work.contract.codec.encode("R1", record)
    for tenant in (a, n):
        await wait_for(lambda t=tenant: _body(work, work.region_of[t], t, rid), 60,
                       "relay record stored in its region")
        work.connect_cm(tenant)
    system.start(CONNECTOR, None)

    async def both_delivered() -> bool:
        for tenant in (a, n):
            row = await _row(work, work.region_of[tenant], tenant, rid)
            if row is None or row["has_body"]:
                return False
        return True
    await wait_for(both_delivered, 60, "both cloud copies deleted after download")
    for tenant in (a, n):
        assert await _cm_body(work, tenant, rid) == sent[tenant], \
            "a cloud copy was deleted although CM does not hold its record"


async def test_a_record_cm_holds_with_other_bytes_is_a_conflict_never_acknowledged(work, system):
    """CM already holds (tenant, id) with other bytes: the relay record under that id is not
    acknowledged (the cloud keeps it) and the conflict is kept; the tenant's next record is
    delivered as usual, which shows the connector went past it."""
    a = await work.onboarded("ap")
    rid, later = work.factory.uuid(), work.factory.uuid()
    record = _with_id(work.make("R3", a, device_id=work.factory.uuid()), rid)
    await work.cm.execute(
        "INSERT INTO relayed_records (record_id, tenant_id, kind, event_time, body)"
        " VALUES ($1, $2, 'R3', now(), $3)", uuid.UUID(rid), uuid.UUID(a), b"CM's own bytes")
    await work.send("R3", record)
    await wait_for(lambda: _body(work, "ap", a, rid), 60, "relay record stored")
    work.connect_cm(a)
    system.start(CONNECTOR, None)
    await wait_for(lambda: work.cm.fetchval(
        "SELECT 1 FROM relay_conflicts WHERE tenant_id = $1 AND record_id = $2",
        uuid.UUID(a), uuid.UUID(rid)), 60, "the conflict recorded")
    await work.send("R3", _with_id(work.make("R3", a, device_id=work.factory.uuid()), later))

    async def later_delivered() -> bool:
        row = await _row(work, "ap", a, later)
        return row is not None and not row["has_body"]
    await wait_for(later_delivered, 60, "the next record delivered")
    row = await _row(work, "ap", a, rid)
    assert row["has_body"] and row["body"] == work.contract.codec.encode("R3", record), \
        "the conflicting record was deleted from the cloud"
    assert await _cm_body(work, a, rid) == b"CM's own bytes"
    assert await work.audited("ap", "delete_after_download", [rid]) == []


async def _producer(settings, principal: str) -> AIOKafkaProducer:
    """Not idempotent: a principal without WRITE on any topic (the sweeper) could not even
    start an idempotent one, and the test is about the topic's answer."""
    producer = AIOKafkaProducer(**kafka_options(settings, principal, request_timeout_ms=10_000),
                                acks="all", enable_idempotence=False)
    await producer.start()
    return producer


def _lifecycle(work: Workload, kind: str, tenant: str) -> tuple[bytes, bytes]:
    extra = {"tenant_onboarded": {"country": "DE"},
             "tenant_subscription_cancelled": {"deletion_requested": True}}.get(kind, {})
    record = work.make(kind, tenant, **extra)
    return work.contract.key(kind, record), work.contract.codec.encode(kind, record)


async def test_no_regional_credential_writes_the_global_lifecycle_topic(work, stack):
    """Every regional principal, every lifecycle kind, for a tenant of another region: the
    broker refuses the write, and the tenant stays as it was."""
    victim = await work.onboarded("na")
    kept = (await work.produce("U12", victim))["envelope"]["record_id"]
    await wait_for(lambda: _body(work, "na", victim, kept), 60, "the victim's record stored")
    accepted = []
    for service in ("pipeline", "sweeper", "gateway", "devices"):
        for region in ("eu", "ap"):
            principal = principal_of(service, region)
            producer = await _producer(stack, principal)
            try:
                for kind in LIFECYCLE_KINDS:
                    key, value = _lifecycle(work, kind, victim)
                    try:
                        await asyncio.wait_for(producer.send_and_wait(
                            topic_name(TopicKind.TENANT_LIFECYCLE), value, key=key), 15)
                    except TopicAuthorizationFailedError:
                        continue
                    accepted.append(f"{principal} wrote {kind}")
            finally:
                await producer.stop()
    assert not accepted, accepted
    assert await work.directory_state(victim) == "active"
    assert await _body(work, "na", victim, kept) is not None


async def test_a_gateway_credential_cannot_delete_or_change_another_regions_tenant(work, stack):
    """With each region's gateway credential: a deletion request for a tenant of another
    region, sent on the only deletion topic it may write, is refused as wrong_region and
    counted (a dead letter at its offset); every other lifecycle event on it, even for its own
    region's tenant, is refused as not a deletion request; another region's deletion topic
    refuses the write. Nothing of either tenant changes."""
    for region in REGIONS:
        other = next(r for r in REGIONS if r != region)
        foreign, own = await work.onboarded(other), await work.onboarded(region)
        kept = {t: (await work.produce("U12", t))["envelope"]["record_id"] for t in (foreign, own)}
        for t, rid in kept.items():
            await wait_for(lambda t=t, rid=rid: _body(work, work.region_of[t], t, rid), 60,
                           "records stored")
        producer = await _producer(stack, principal_of("gateway", region))
        try:
            sent = []
            key, value = _lifecycle(work, "tenant_deletion_requested", foreign)
            sent.append(("wrong_region", await producer.send_and_wait(
                topic_name(TopicKind.DELETION_REQUESTS, region), value, key=key)))
            for kind in ("tenant_onboarded", "tenant_subscription_ended",
                         "tenant_subscription_cancelled"):
                for tenant in (foreign, own):
                    key, value = _lifecycle(work, kind, tenant)
                    sent.append(("not_a_deletion_request", await producer.send_and_wait(
                        topic_name(TopicKind.DELETION_REQUESTS, region), value, key=key)))
            key, value = _lifecycle(work, "tenant_deletion_requested", foreign)
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(producer.send_and_wait(
                    topic_name(TopicKind.DELETION_REQUESTS, other), value, key=key), 15)
        finally:
            await producer.stop()
        for reason, meta in sent:
            letter = await wait_for(lambda m=meta, r=region: work.dead_letter(r, m), 60,
                                    f"the refusal of {meta.topic}@{meta.offset} counted")
            assert letter["reason"] == reason, (meta, letter["reason"])
        for t, rid in kept.items():
            assert await work.directory_state(t) == "active", f"a tenant of {work.region_of[t]} changed"
            assert await _body(work, work.region_of[t], t, rid) is not None


async def test_a_session_event_under_another_tenants_device_id_leaves_its_commands_alone(work):
    """Tenant A's commands for a device wait for their session (no session row yet: they keep
    their fallback deadline). Tenant B opens "its" session under the same device and session
    ids: B gets a session row of its own, and A's commands keep their deadline and stay
    stored (device ids are the producers' too; a session is (tenant, device)). With A's own
    session absent, any statement that matched sessions or commands by device alone would move
    A's deadlines to B's session's expiry."""
    a, b = await work.onboarded("eu"), await work.onboarded("eu")
    device, session = work.factory.uuid(), work.factory.uuid()
    pool = work.region_pool("eu")
    ids = [(await work.produce("device_command", a, device_id=device, session_id=session))
           ["envelope"]["record_id"] for _ in range(3)]
    await wait_for(lambda: _all_held(work, a, ids), 60, "A's commands stored")

    async def deadlines() -> set[dt.datetime]:
        return {r["deadline"] for r in await pool.fetch(
            "SELECT deadline FROM records WHERE tenant_id = $1 AND record_id = ANY($2::uuid[])",
            uuid.UUID(a), [uuid.UUID(i) for i in ids])}
    before = await deadlines()

    await work.produce("device_session", b, device_id=device, session_id=session,
                       event_type="START", expires_at=work.clock.now_ms() + 600_000)
    await wait_for(lambda: pool.fetchval(
        "SELECT 1 FROM device_sessions WHERE tenant_id = $1 AND device_id = $2",
        uuid.UUID(b), uuid.UUID(device)), 60, "B's session event applied")
    assert await deadlines() == before, "another tenant's session event moved A's deadlines"
    assert await _all_held(work, a, ids)
    assert not await pool.fetchval("SELECT 1 FROM device_sessions WHERE tenant_id = $1",
                                   uuid.UUID(a))


async def _all_held(work: Workload, tenant: str, ids: list[str]) -> bool:
    for rid in ids:
        row = await _row(work, "eu", tenant, rid)
        if row is None or not row["has_body"]:
            return False
    return True
