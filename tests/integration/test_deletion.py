"""Deletion is real and final (docs/design.md rules 6 and 7), checked where the data could
still be: every topic's raw bytes, every table of every cloud database, the dead letters and
the processes' logs.

The processes run on a clock 50,000 times faster than real time: a dead letter's 7 days pass
in 12 real seconds.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.identities import ADMIN
from mdmbus.regions import DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.streams.app import lifecycle_app_id
from mdmbus.topics import TopicKind, all_topics, group_name, topic_name
from tests.conftest import wait_for
from tests.integration.harness import ALL_PROCESSES, Workload, _partitions, rewind

pytestmark = pytest.mark.integration

PROCESSES = ALL_PROCESSES

SPEED = 50_000.0
#: The cloud's databases (CM's is the customer's own: relayed data belongs there).
CLOUD = [*(region_database(r) for r in REGIONS), DIRECTORY_DATABASE]


def _canaries() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {"upn": f"canary.{tag}@contoso.example", "email": f"canary.mail.{tag}@contoso.example",
            "name": f"Canary Person {tag}", "device": f"CANARY-PHONE-{tag}"}


async def _tables(conn: asyncpg.Connection) -> list[str]:
    return [r["t"] for r in await conn.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]


async def found_in_databases(settings, values: list[str]) -> list[str]:
    """Where any of ``values`` appears in any row of any table of the cloud databases (every
    column as text, bytea as its bytes)."""
    hits = []
    for database in CLOUD:
        conn = await pg_connect(settings, database)
        try:
            for table in await _tables(conn):
                for value in values:
                    # Text columns as text, bytea columns by their bytes.
                    if await conn.fetchval(
                            f"SELECT EXISTS (SELECT 1 FROM {table} t WHERE position($1 in t::text) > 0"
                            f" OR position(convert_to($1, 'UTF8') in"
                            f" convert_to(t::text, 'UTF8')) > 0)", value) or \
                            await _in_bytea(conn, table, value):
                        hits.append(f"{database}.{table}: {value}")
        finally:
            await conn.close()
    return hits


async def _in_bytea(conn: asyncpg.Connection, table: str, value: str) -> bool:
    columns = [r["c"] for r in await conn.fetch(
        "SELECT quote_ident(column_name) AS c FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = $1 AND data_type = 'bytea'",
        table.strip('"'))]
    for column in columns:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE"
                               f" position(convert_to($1, 'UTF8') in {column}) > 0)", value):
            return True
    return False


async def found_in_topics(work: Workload, values: list[str]) -> list[str]:
    """Where any of ``values`` can still be read in any topic (keys, values, headers)."""
    hits = []
    for m in await work.read_all():
        raw = (m.key or b"") + (m.value or b"") + b"".join(v for _, v in m.headers or ())
        hits += [f"{m.topic}[{m.partition}]@{m.offset}: {v}" for v in values if v.encode() in raw]
    return hits


def found_in_logs(system, values: list[str]) -> list[str]:
    """Where any of ``values`` appears in the processes' logs. Fails when there is no log to
    search (a wrong directory would otherwise find nothing, and pass)."""
    logs = sorted(system.log_dir.glob("*.log"))
    if not logs or not any(log.stat().st_size for log in logs):
        raise AssertionError(f"no process log to search in {system.log_dir}")
    hits = []
    for log in logs:
        text = log.read_text(errors="replace")
        hits += [f"{log.name}: {v}" for v in values if v in text]
    return hits


async def test_after_a_deletion_request_the_tenants_data_is_readable_nowhere(work, system):
    region = "eu"
    tenant = await work.onboarded(region)
    canary = _canaries()
    device, session = work.factory.uuid(), work.factory.uuid()
    # A session open for an hour of real time, so the command below is kept until the purge.
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=work.clock.now_ms() + int(3600 * SPEED * 1000))
    sent = [
        await work.produce("U7", tenant, upn=canary["upn"], user_name=canary["name"],
                           email=canary["email"], email_profile_deployed=True),
        await work.produce("U9", tenant, device_id=device, device_name=canary["device"]),
        await work.produce("R3", tenant, device_id=device, message=f"{canary['device']} error"),
        await work.produce("device_command", tenant, device_id=device, session_id=session,
                           command="RENAME", new_device_name=canary["device"]),
    ]
    # A refused record carries the canary too: its body is kept as a dead letter.
    refused = work.make("U7", tenant, upn=canary["upn"], user_name=canary["name"],
                        email=canary["email"], email_profile_deployed=False)
    meta = await work.send("U7", refused)
    ids = [r["envelope"]["record_id"] for r in sent]
    await wait_for(lambda: _all_stored(work, region, ids), 60, "the tenant's records stored")
    letter = await wait_for(lambda: work.dead_letter(region, meta), 60, "the dead letter")
    assert letter["body"] is not None
    values = list(canary.values())
    # The scans see what is there: the tenant's onboarding in the lifecycle topic, its rows in
    # the stores, now.
    assert any("mdm.tenant.lifecycle" in hit for hit in await found_in_topics(work, [tenant]))
    rows = await found_in_databases(work.settings, [tenant])
    assert any("records" in hit for hit in rows) and any("dead_letters" in hit for hit in rows)
    # The canaries are there, sealed (docs/design.md section 9): in no row in clear, in the
    # records and the dead letter once opened with the region's keyring.
    assert not await found_in_databases(work.settings, values)
    opened = b"".join(b for b in (await work.bodies(region, ids)).values() if b)
    assert canary["upn"].encode() in opened and canary["device"].encode() in opened
    assert canary["upn"].encode() in letter["body"]

    receipt = await work.client(tenant, "admin").delete()
    assert receipt["status"] == "completed"
    bound = max(spec.unreadable_s for _, spec in all_topics())

    async def nowhere() -> list[str] | None:
        hits = await found_in_databases(work.settings, values) + \
            await found_in_topics(work, values) + found_in_logs(system, values)
        return None if hits else ["nowhere"]
    await wait_for(nowhere, bound + 5, "the canary readable nowhere")
    assert not await found_in_databases(work.settings, values)
    assert not await found_in_topics(work, values)
    assert not found_in_logs(system, values)


async def _all_stored(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def _lag_zero(work: Workload, reads: dict[str, list[str]]) -> bool:
    """Whether every group (-> the topics it reads) has committed up to the end."""
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(**kafka_options(work.settings, ADMIN))
    consumer = AIOKafkaConsumer(**kafka_options(work.settings, ADMIN))
    await admin.start()
    await consumer.start()
    try:
        for group, topics in reads.items():
            tps = [tp for t in topics for tp in _partitions(t)]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            for tp in tps:
                meta = committed.get(tp)
                if meta is None or meta.offset < ends[tp]:
                    return False
        return True
    finally:
        await consumer.stop()
        await admin.close()


async def test_a_purged_tenant_stays_purged_when_every_topic_is_replayed(work, system):
    region = "eu"
    tenant = await work.onboarded(region)
    onboarding_bytes = None
    for m in await work.read_all([topic_name(TopicKind.TENANT_LIFECYCLE)]):
        if m.key == tenant.encode():
            onboarding_bytes = m.value
    assert onboarding_bytes is not None
    device = work.factory.uuid()
    records = [await work.produce(kind, tenant, device_id=device)
               for kind in ("U1", "U9", "R1", "R4", "inventory_cache")]
    ids = [r["envelope"]["record_id"] for r in records]
    originals = [(r["envelope"]["kind"], work.contract.codec.encode(r["envelope"]["kind"], r))
                 for r in records]
    await wait_for(lambda: _all_stored(work, region, ids), 60, "stored")
    await work.produce("tenant_subscription_cancelled", tenant, deletion_requested=True)
    await wait_for(lambda: _state_is(work, tenant, "purged"), 30, "the tenant purged")
    letters_before = await work.region_pool(region).fetchval(
        "SELECT count(*) FROM dead_letters WHERE tenant_id = $1", uuid.UUID(tenant))
    assert letters_before == 0

    # Replay: every group back to the earliest offsets, and the original bytes sent again.
    system.stop("pipeline-all")
    reads = {group_name("pipeline", r): [n for n, s in all_topics([r]) if s.transit]
             for r in REGIONS}
    reads[lifecycle_app_id(REGIONS)] = [topic_name(TopicKind.TENANT_LIFECYCLE)]
    for group, topics in reads.items():
        await rewind(work.settings, group, topics=topics)
    onboarding = await work.send_raw(topic_name(TopicKind.TENANT_LIFECYCLE), onboarding_bytes,
                                     tenant.encode())
    resent = [await work.send_raw(work.topic_of(kind, region), value, tenant.encode()
                                  if work.contract.spec(kind).key_field == "tenant_id"
                                  else device.encode()) for kind, value in originals]
    system.start("pipeline", "all")
    await wait_for(lambda: _lag_zero(work, reads), 120, "every group caught up with the replay")

    assert await work.directory_state(tenant) == "purged"
    for r in REGIONS:
        pool = work.region_pool(r)
        assert not await pool.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = $1",
                                       uuid.UUID(tenant)), f"the tenant is back in {r}"
        assert not await pool.fetchval("SELECT count(*) FROM records WHERE tenant_id = $1",
                                       uuid.UUID(tenant)), f"a row of the tenant in {r}"
        assert not await pool.fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant_id = $1 AND body IS NOT NULL",
            uuid.UUID(tenant)), f"a dead-letter body of the tenant in {r}"
        assert not await pool.fetchval("SELECT count(*) FROM device_sessions WHERE tenant_id = $1",
                                       uuid.UUID(tenant))
    # The re-sent onboarding was refused as a deleted tenant's, and so were the records.
    refusal = await work.directory.fetchval(
        "SELECT reason FROM lifecycle_refusals WHERE source_topic = $1 AND source_partition = $2"
        " AND source_offset = $3", onboarding.topic, onboarding.partition, onboarding.offset)
    assert refusal == "tenant_deleted"
    for meta in resent:
        letter = await work.dead_letter(region, meta)
        assert letter is not None and letter["reason"] == "tenant_deleted", letter
        assert letter["body"] is None


async def _state_is(work: Workload, tenant: str, state: str) -> bool:
    return await work.directory_state(tenant) == state


async def test_a_dead_letters_body_expires_at_its_deadline(work):
    region = "na"
    tenant = await work.onboarded(region)
    record = work.make("U3", tenant, subject_name_format="-----BEGIN CERTIFICATE-----\nAA\n"
                                                          "-----END CERTIFICATE-----")
    meta = await work.send("U3", record)
    letter = await wait_for(lambda: work.dead_letter(region, meta), 30, "the dead letter")
    assert letter["reason"] == "certificate_body" and letter["body"] is not None
    days = (letter["deadline"] - letter["stored_at"]).total_seconds() / 86_400
    assert days == pytest.approx(7.0)
    # 7 simulated days are 12 real seconds here.
    await wait_for(lambda: _letter_gone(work, region, meta), 40, "the dead letter deleted")
    audited = await work.audited(region, "dead_letter_expiry", [record["envelope"]["record_id"]])
    assert audited == [record["envelope"]["record_id"]]


async def _letter_gone(work: Workload, region: str, meta) -> bool:
    return await work.dead_letter(region, meta) is None


async def test_a_dead_letters_body_goes_with_its_tenants_purge(work):
    region = "ap"
    tenant = await work.onboarded(region)
    record = work.make("U7", tenant, email="someone@contoso.example", email_profile_deployed=False)
    meta = await work.send("U7", record)
    letter = await wait_for(lambda: work.dead_letter(region, meta), 30, "the dead letter")
    assert letter["body"] is not None
    await work.client(tenant, "admin").delete()
    assert await work.dead_letter(region, meta) is None
    assert await work.audited(region, "deletion_request", [record["envelope"]["record_id"]]) \
        == [record["envelope"]["record_id"]]
