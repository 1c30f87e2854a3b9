"""Rule 2, delete after download, end to end through the CM connector (docs/design.md rule 2,
sections 3-6): relay records reach CM's database exactly once, with the bytes they were sent
with, and their cloud copies are deleted (and audited once, under delete_after_download, with
the tenant) only after CM has committed them -- however long CM is offline, however often the
connector dies mid-batch.

The pipeline, gateway and sweeper run as real processes for the whole module (``--region
all``, real time); each test starts (and kills) its own CM connector, which serves the
tenants whose token files the test writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import RecordMetadata, TopicPartition

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.identities import ADMIN
from mdmbus.regions import CM_DATABASE, REGIONS
from mdmbus.services.simulators.records import RELAY_KINDS
from mdmbus.stack.provision import topic_configs
from mdmbus.topics import TopicKind, spec_of, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload

pytestmark = pytest.mark.integration

#: Pipeline, gateway and sweeper for every region; no CM connector (each test runs its own).
PROCESSES = [("pipeline", "all"), ("gateway", "all"), ("sweeper", "all")]

SPEED = 1.0
CONNECTOR = "cm-connector"
RULE = "delete_after_download"
#: The connector's name in pg_stat_activity (services/connector/connector.py).
APPLICATION = "mdmbus-cm-connector"


@dataclass(frozen=True)
class Sent:
    tenant: str
    region: str
    kind: str
    device: str
    value: bytes


@dataclass
class Load:
    """What a test sent: record id -> what was sent."""

    sent: dict[str, Sent] = field(default_factory=dict)

    def ids(self, region: str | None = None) -> list[str]:
        return [i for i, s in self.sent.items() if region is None or s.region == region]

    @property
    def regions(self) -> set[str]:
        return {s.region for s in self.sent.values()}


def _relay(work: Workload, tenant: str, kind: str) -> tuple[str, Sent, dict]:
    device = work.factory.uuid()
    record = work.make(kind, tenant, device_id=device)
    value = work.contract.codec.encode(kind, record)
    sent = Sent(tenant, work.region_of[tenant], kind, device, value)
    return record["envelope"]["record_id"], sent, record


async def _send(work: Workload, load: Load,
                items: list[tuple[str, Sent, dict]]) -> list[RecordMetadata]:
    """Sends relay records to their region's relay topic, all in flight at once."""
    futures = []
    for rid, sent, record in items:
        load.sent[rid] = sent
        futures.append(await work.producer.send(
            work.topic_of(sent.kind, sent.region), value=sent.value,
            key=work.contract.key(sent.kind, record)))
    return list(await asyncio.gather(*futures))


async def _send_relays(work: Workload, load: Load, tenant: str, n: int,
                       rng: random.Random) -> tuple[list[str], list[RecordMetadata]]:
    items = [_relay(work, tenant, rng.choice(RELAY_KINDS)) for _ in range(n)]
    metas = await _send(work, load, items)
    return [rid for rid, _, _ in items], metas


def _uuids(ids) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


async def _stored_count(work: Workload, region: str, ids: list[str]) -> int:
    return await work.region_pool(region).fetchval(
        "SELECT count(*) FROM records WHERE record_id = ANY($1::uuid[]) AND body IS NOT NULL",
        _uuids(ids))


async def _in_cm(work: Workload, ids: list[str]) -> int:
    return await work.cm.fetchval(
        "SELECT count(*) FROM relayed_records WHERE record_id = ANY($1::uuid[])", _uuids(ids))


async def _cloud_copies(work: Workload, load: Load) -> int:
    """Relay records of ``load`` whose body is still in their region's store."""
    return sum([len(await work.stored(r, load.ids(r))) for r in load.regions])


async def _nothing_lost(work: Workload, load: Load) -> None:
    """Every record whose cloud copy is gone (a tombstone id) is in CM: read in that order, so
    an acknowledgement can only have come after CM's commit."""
    gone: set[str] = set()
    for region in load.regions:
        gone |= {str(r["record_id"]) for r in await work.region_pool(region).fetch(
            "SELECT record_id FROM records WHERE record_id = ANY($1::uuid[]) AND body IS NULL",
            _uuids(load.ids(region)))}
    in_cm = {str(r["record_id"]) for r in await work.cm.fetch(
        "SELECT record_id FROM relayed_records WHERE record_id = ANY($1::uuid[])", _uuids(gone))}
    assert gone <= in_cm, f"{len(gone - in_cm)} records deleted from the cloud and not in CM"


async def _connector_backends(work: Workload, waiting_on_lock: bool = False) -> int:
    return await work.cm.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
        " AND pid <> pg_backend_pid()"
        + (" AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO relayed_records%'"
           if waiting_on_lock else ""), CM_DATABASE, APPLICATION)


async def _check_final(work: Workload, load: Load) -> dict[uuid.UUID, dt.datetime]:
    """Every record of ``load`` in CM exactly once with the bytes sent, tenant, kind and device;
    no cloud copy left in any region (a tombstone id only, in its own region); each id audited
    exactly once under delete_after_download, with its tenant, after CM had it. Returns each
    record's audit deleted_at_real."""
    ids = _uuids(load.sent)
    rows = await work.cm.fetch(
        "SELECT record_id, tenant_id, kind, device_id, body, received_at FROM relayed_records"
        " WHERE record_id = ANY($1::uuid[])", ids)
    assert len(rows) == len(ids), f"{len(ids) - len(rows)} of {len(ids)} records not in CM"
    received = {}
    for row in rows:
        sent = load.sent[str(row["record_id"])]
        assert row["body"] == sent.value, "CM holds other bytes than were sent"
        assert (str(row["tenant_id"]), row["kind"], str(row["device_id"])) == \
            (sent.tenant, sent.kind, sent.device)
        received[row["record_id"]] = row["received_at"]

    deleted_at: dict[uuid.UUID, dt.datetime] = {}
    for region in REGIONS:
        assert not await work.stored(region, load.ids()), f"a cloud copy is left in {region}"
        mine = load.ids(region)
        # The id stays as a tombstone in its own region, and nowhere else.
        assert await work.stored(region, load.ids(), with_body=False) == set(mine)
        audited = await work.audited(region, RULE, load.ids())
        assert Counter(audited) == Counter(mine), \
            f"{region}: audited not exactly once each " \
            f"({len(audited)} entries for {len(mine)} records, {len(set(audited))} distinct)"
        for row in await work.region_pool(region).fetch(
                "SELECT tenant_id, region, category, row_count, record_ids, deleted_at_real"
                " FROM deletion_audit WHERE rule = $1 AND record_ids && $2::uuid[]", RULE, ids):
            assert row["region"] == region and row["category"] == "relay"
            assert row["row_count"] == len(row["record_ids"])
            for rid in row["record_ids"]:
                sent = load.sent[str(rid)]
                assert str(row["tenant_id"]) == sent.tenant, "audit row without its tenant"
                assert row["deleted_at_real"] >= received[rid], \
                    f"{rid} deleted from the cloud at {row['deleted_at_real']}, before CM " \
                    f"received it at {received[rid]}"
                deleted_at[rid] = row["deleted_at_real"]
    return deleted_at


# ------------------------------------------------------------------------ 1. CM offline

async def _alter_topic(stack, topic: str, config: dict[str, str]) -> None:
    """Sets the topic's whole configuration (AlterConfigs replaces every topic override, so
    the declared ones are always passed along)."""
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN, topic.split(".")[1]))
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])
    finally:
        await admin.close()


async def _readable(work: Workload, topic: str) -> tuple[dict[int, int], list[bytes]]:
    """Each partition's log start offset, and every value readable from there to the end."""
    tps = [TopicPartition(topic, p) for p in range(spec_of(TopicKind.RELAY).partitions)]
    consumer = AIOKafkaConsumer(**kafka_options(work.settings, ADMIN, topic.split(".")[1]),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        for tp in tps:
            consumer.seek(tp, starts[tp])
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        deadline = time.monotonic() + 30
        while todo:
            assert time.monotonic() < deadline, "the relay topic could not be read to its end"
            for tp, msgs in (await consumer.getmany(*todo, timeout_ms=500)).items():
                values += [m.value for m in msgs]
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
            for tp in list(todo):  # truncated meanwhile: nothing more to read there
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return {tp.partition: starts[tp] for tp in tps}, values
    finally:
        await consumer.stop()


async def test_cm_offline_loses_nothing_only_the_store_holds_the_records(stack, system, work):
    """No connector runs while 1,000 relay records arrive; their Kafka copies go; then the
    connector starts and carries every one of them to CM, exactly once, from the store."""
    assert CONNECTOR not in system.procs
    rng = random.Random(uuid.uuid4().int)
    region = "eu"
    tenant = await work.onboarded(region)
    work.connect_cm(tenant)
    load = Load()
    ids, metas = await _send_relays(work, load, tenant, 1000, rng)
    assert set(s.kind for s in load.sent.values()) == set(RELAY_KINDS)
    await wait_for(lambda: _count_is(_stored_count(work, region, ids), 1000), 120,
                   "1,000 relay records in the eu store")
    status = await work.client(tenant).status()
    assert status["relay_pending"] == 1000, status
    assert await _in_cm(work, ids) == 0, "in CM with no connector running"

    # Every Kafka copy gone: the relay topic's retention shortened (restored below), and the
    # pipeline truncates what it has stored; none of the 1,000 readable from the earliest offset.
    topic = topic_name(TopicKind.RELAY, region)
    declared = dict(spec_of(TopicKind.RELAY).config)
    values = {s.value for s in load.sent.values()}
    last = {}  # partition -> the offset of the last of the 1,000 written there
    for meta in metas:
        assert meta.topic == topic
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)

    async def none_readable() -> bool:
        starts, readable = await _readable(work, topic)
        # The log starts past every one of them (so none can be read, whatever the reader),
        # and reading from the earliest offset to the end yields none of them.
        return all(starts[p] > offset for p, offset in last.items()) and \
            not values.intersection(readable)
    try:
        await _alter_topic(stack, topic, {**declared, "retention.ms": "1000",
                                          "segment.ms": "1000"})
        await wait_for(none_readable, 60, f"no copy of the 1,000 readable in {topic}")
    finally:
        await _alter_topic(stack, topic, declared)
    effective = (await topic_configs(stack, [topic]))[topic]
    assert {k: effective[k] for k in declared} == declared, "the topic was not restored"
    # Only the store holds them now, still all 1,000, still unacknowledged.
    assert await _stored_count(work, region, ids) == 1000
    assert not await work.audited(region, RULE, ids)

    system.start(CONNECTOR, None)
    await wait_for(lambda: _count_is(_in_cm(work, ids), 1000), 90, "1,000 records in CM")
    await wait_for(lambda: _count_is(_cloud_copies(work, load), 0), 30,
                   "every cloud copy deleted")
    await _check_final(work, load)
    starts, readable = await _readable(work, topic)
    assert not values.intersection(readable), "a copy came back to the relay topic"
    system.assert_alive()


async def _count_is(count, n: int) -> bool:
    return await count == n


# ------------------------------------------------------------------------ 2. kill -9

@dataclass
class Kill:
    engineered: bool
    killed_at: float
    restarted_at: float = 0.0
    #: In CM and still in the cloud once the killed connector's statements were over: committed
    #: to CM, never acknowledged by the run that committed them.
    straddling: set[str] = field(default_factory=set)
    #: The record whose id the test held uncommitted in CM (an engineered kill).
    claimed: str | None = None


async def _produce_until(work: Workload, load: Load, tenants: list[str], stop: asyncio.Event,
                         rng: random.Random, per_tenant: int = 2, every_s: float = 0.06) -> None:
    """About 100 relay records a second, spread over the tenants, until ``stop``."""
    while not stop.is_set():
        items = [_relay(work, t, rng.choice(RELAY_KINDS)) for t in tenants for _ in range(per_tenant)]
        await _send(work, load, items)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


async def _kill_between_commit_and_ack(stack, system, work: Workload, load: Load,
                                       tenant: str, rng: random.Random) -> Kill:
    """Kills the connector while its CM INSERT of a batch is in progress, so that the INSERT
    commits after the process is gone (PostgreSQL finishes a statement whose client died):
    the batch is in CM and was never acknowledged. The INSERT is held by an uncommitted row of
    the test with the id of a record the connector is about to download; the test kills the
    connector while its INSERT waits for that row, then rolls the row back."""
    rid, sent, record = _relay(work, tenant, rng.choice(RELAY_KINDS))
    claim = await pg_connect(stack, CM_DATABASE)
    try:
        tx = claim.transaction()
        await tx.start()
        await claim.execute(
            "INSERT INTO relayed_records (record_id, tenant_id, kind, event_time, body)"
            " VALUES ($1, $2, $3, now(), '\\x00')", uuid.UUID(rid), uuid.UUID(tenant), sent.kind)
        await _send(work, load, [(rid, sent, record)])
        await wait_for(lambda: _connector_backends(work, waiting_on_lock=True), 60,
                       "the connector's INSERT waiting for the claimed record")
        system.assert_alive()
        system.kill(CONNECTOR, signal.SIGKILL)
        killed_at = time.time()
        await tx.rollback()
    finally:
        await claim.close()
    return Kill(True, killed_at, claimed=rid)


async def test_kill_9_between_cm_commit_and_ack_many_times_under_load(stack, system, work):
    """Three tenants (one a region) keep sending relay records while the connector is killed
    with SIGKILL nine times: at random moments, and every third time while its CM INSERT is
    held, so that the INSERT commits after the process is gone; then it runs to the end. Every record in CM once, every cloud copy
    gone, each id audited once, never before CM had it; and the batches caught between CM's
    commit and the acknowledgement were acknowledged by a later run (downloaded again)."""
    rng = random.Random(uuid.uuid4().int)
    tenants = [await work.onboard(r) for r in ("na", "eu", "ap")]
    for t in tenants:
        await wait_for(lambda t=t: work.tenant_region(t), 60, "tenant onboarded")
        work.connect_cm(t)
    load = Load()
    system.start(CONNECTOR, None)
    stop = asyncio.Event()
    producing = asyncio.create_task(_produce_until(work, load, tenants, stop, rng))
    kills: list[Kill] = []
    try:
        for i in range(9):
            # A random moment: the fault schedule, not a synchronisation.
            await asyncio.sleep(rng.uniform(2.5, 4.0))
            assert not producing.done(), producing
            if i % 3 == 2:
                kill = await _kill_between_commit_and_ack(stack, system, work, load,
                                                          rng.choice(tenants), rng)
            else:
                system.assert_alive()
                system.kill(CONNECTOR, signal.SIGKILL)
                kill = Kill(False, time.time())
            # The dead connector's backends finish what they were doing (a statement whose
            # client died still commits) and go; then what CM holds and the cloud still holds
            # was committed by the killed run and never acknowledged.
            await wait_for(lambda: _count_is(_connector_backends(work), 0), 30,
                           "the killed connector's database sessions gone")
            await _nothing_lost(work, load)
            in_cm = {str(r["record_id"]) for r in await work.cm.fetch(
                "SELECT record_id FROM relayed_records WHERE record_id = ANY($1::uuid[])",
                _uuids(load.sent))}
            for region in load.regions:
                kill.straddling |= await work.stored(region, [r for r in load.ids(region)
                                                              if r in in_cm])
            kill.restarted_at = time.time()
            system.start(CONNECTOR, None)
            kills.append(kill)
    finally:
        stop.set()
        await producing
    sent_n = len(load.sent)

    async def finished() -> bool:
        system.assert_alive()
        await _nothing_lost(work, load)
        return await _in_cm(work, list(load.sent)) == sent_n and \
            await _cloud_copies(work, load) == 0
    await wait_for(finished, 150, f"{sent_n} records in CM and gone from the cloud")
    deleted_at = await _check_final(work, load)

    report = [(k.engineered, len(k.straddling)) for k in kills]
    print(f"\n{sent_n} relay records; kills (engineered, records committed to CM and not "
          f"acknowledged): {report}")
    assert len(kills) == 9
    for kill in kills:
        if kill.engineered:
            assert kill.claimed in kill.straddling, \
                "the record held at the killed connector's INSERT was not both in CM and still " \
                "in the cloud after the kill (acknowledged before CM committed it?)"
        for rid in kill.straddling:
            # Acknowledged (deleted) only after the restart: a later run downloaded it again.
            assert deleted_at[uuid.UUID(rid)].timestamp() > kill.restarted_at
    assert sum(len(k.straddling) for k in kills) > 0


# ------------------------------------------------------------------------ 3. ack after commit

async def test_acknowledgement_only_after_the_cm_commit(stack, system, work):
    """CM's table locked: the connector downloads, its INSERT waits, and for as long as it
    waits every cloud copy stays and nothing is audited; the lock released, CM commits and
    the copies go. An acknowledgement sent before the CM write fails this test."""
    rng = random.Random(uuid.uuid4().int)
    region = "ap"
    tenant = await work.onboarded(region)
    work.connect_cm(tenant)
    system.start(CONNECTOR, None)
    load = Load()
    lock = await pg_connect(stack, CM_DATABASE)
    try:
        tx = lock.transaction()
        await tx.start()
        await lock.execute("LOCK TABLE relayed_records IN ACCESS EXCLUSIVE MODE")
        ids, _ = await _send_relays(work, load, tenant, 60, rng)
        await wait_for(lambda: _count_is(_stored_count(work, region, ids), len(ids)), 60,
                       "the relay records in the ap store")
        await wait_for(lambda: _connector_backends(work, waiting_on_lock=True), 60,
                       "the connector's INSERT waiting for the lock")
        # As long as CM cannot commit: every copy stays in the cloud, nothing is audited.
        polls, until = 0, time.monotonic() + 4.0
        while time.monotonic() < until:
            assert await work.stored(region, ids) == set(ids), \
                "cloud copies deleted while CM had not committed them"
            assert not await work.audited(region, RULE, ids), \
                "deletions audited while CM had not committed the records"
            assert await lock.fetchval(
                "SELECT count(*) FROM relayed_records WHERE record_id = ANY($1::uuid[])",
                _uuids(ids)) == 0
            assert await _connector_backends(work, waiting_on_lock=True), \
                "the connector stopped waiting for CM"
            polls += 1
            await asyncio.sleep(0.2)
        assert polls >= 5
        system.assert_alive()
        await tx.rollback()
    finally:
        await lock.close()
    await wait_for(lambda: _count_is(_in_cm(work, ids), len(ids)), 30, "the records in CM")
    await wait_for(lambda: _count_is(_cloud_copies(work, load), 0), 30,
                   "the cloud copies deleted once CM committed")
    await _check_final(work, load)
