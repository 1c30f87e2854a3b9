"""Bad input never costs a valid record, and a restarted processor has no effect twice."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.contract import REDACTED
from mdmbus.identities import ADMIN
from mdmbus.regions import REGIONS, region_database
from mdmbus.topics import TopicKind, group_name, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, rewind
from tests.ports import free_port
from tests.unit.examples import der, pem

pytestmark = pytest.mark.integration

PRIVATE_KEY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
               "-----END PRIVATE KEY-----\n")


@pytest.fixture
def procs(stack, tmp_path):
    p = launcher(stack, tmp_path, speed=1.0)
    yield p
    p.stop()


async def test_invalid_records_go_to_dead_letters_and_their_neighbours_are_stored(stack, procs):
    procs.start("pipeline", "all")
    region = "eu"
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        tenant = await work.onboarded(region)
        upload = topic_name(TopicKind.UPLOAD, region)
        codec = work.contract.codec
        valid, bad = [], []  # bad: (metadata, reason, record id or None)
        for i in range(21):
            valid.append((await work.produce("U9", tenant))["envelope"]["record_id"])
            kind = i % 7
            record = None
            if kind == 0:
                meta = await work.send_raw(upload, b"\x00garbage" * 3, key=tenant.encode())
                reason = "wrong_marker"
            elif kind == 1:
                record = work.make("U1", tenant)
                meta = await work.send_raw(upload, codec.encode("U1", record)[:-3], tenant.encode())
                reason, record = "truncated", None  # its id cannot be read back
            elif kind == 2:
                meta = await work.send_raw(upload, b"\xc3\x01" + b"\xff" * 8 + b"body",
                                           tenant.encode())
                reason = "unknown_fingerprint"
            elif kind == 3:
                record = work.make("U3", tenant, subject_name_format=PRIVATE_KEY)
                meta = await work.send("U3", record)
                reason = "private_key_material"
            elif kind == 4:
                record = work.make("U7", tenant, email="someone@contoso.com",
                                   email_profile_deployed=False)
                meta = await work.send("U7", record)
                reason = "email_without_profile"
            elif kind == 5:  # a private key where only a public certificate may go
                record = work.make("U10", tenant,
                                   scep_challenge_encryption_certificate=der("ec_private_pkcs8"))
                meta = await work.send("U10", record)
                reason = "private_key_material"
            else:  # a certificate body outside U10's public-key field
                record = work.make("U3", tenant,
                                   subject_name_format=pem("CERTIFICATE", der("certificate")).decode())
                meta = await work.send("U3", record, key=None)
                reason = "certificate_body"  # content is checked before the (missing) key
            bad.append((meta, reason, record))

        async def all_valid_stored() -> bool:
            return await work.stored(region, valid) == set(valid)
        await wait_for(all_valid_stored, 60, "every valid neighbour stored")

        letters = {}
        for meta, _reason, _record in bad:
            letters[meta] = await wait_for(lambda m=meta: work.dead_letter(region, m), 60,
                                           f"the dead letter of {meta.topic}@{meta.offset}")
        for meta, reason, record in bad:
            letter = letters[meta]
            assert letter["reason"] == reason, (letter["reason"], reason)
            assert letter["error"], "a dead letter says what was wrong"
            assert str(letter["tenant_id"]) == tenant, "linked to its tenant for its purge"
            # The secret is stored nowhere: not in the dead letter, whatever the reason.
            assert b"PRIVATE KEY" not in (letter["body"] or b"")
            assert der("ec_private_pkcs8") not in (letter["body"] or b"")
            if reason == "private_key_material":
                assert letter["redacted"]
                kind, kept = codec.decode(letter["body"])
                field = "scep_challenge_encryption_certificate" if kind == "U10" \
                    else "subject_name_format"
                assert kept[field] in (REDACTED, REDACTED.encode())
            if record is not None:
                # A refused record is in no store of any region.
                assert await work.anywhere([record["envelope"]["record_id"]]) == \
                    {r: set() for r in REGIONS}
        # The notices on the dead-letter topic carry ids and reasons, never a body.
        notices = [m for m in await work.read_all([topic_name(TopicKind.DEAD_LETTER, region)])
                   if m.key == tenant.encode()]
        sources = {(n["source"]["topic"], n["source"]["partition"], n["source"]["offset"]): n
                   for n in (json.loads(m.value) for m in notices)}
        for meta, reason, _record in bad:
            notice = sources[(meta.topic, meta.partition, meta.offset)]
            assert notice["reason"] == reason
            assert set(notice) == {"reason", "path", "kind", "source", "tenant_id", "record_id",
                                   "body_kept", "deadline"}
        for m in notices:
            assert b"PRIVATE KEY" not in m.value and b"someone@contoso.com" not in m.value
    procs.assert_alive()


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


async def _quiet(work: Workload, application: str) -> bool:
    """No session of the killed process is left (its last transaction cannot commit later)."""
    return not await work.region_pool("ap").fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application)


async def test_a_restarted_processor_has_no_effect_twice(stack, procs):
    """Killed mid-stream and restarted from offsets rewound to the start of the test's data
    (so every record and refusal is certainly processed again): nothing is stored, counted,
    dead-lettered or notified twice."""
    region = "ap"
    first = procs.start("pipeline", region, metrics_port=free_port())
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        tenant = await work.onboarded(region)
        upload = topic_name(TopicKind.UPLOAD, region)
        deadletter = topic_name(TopicKind.DEAD_LETTER, region)
        starts = await work.end_offsets(upload)
        notices_from = await work.end_offsets(deadletter)
        ids, bad = [], []
        for i in range(3000):
            record = work.make("U1", tenant)
            await work.producer.send(upload, value=work.contract.codec.encode("U1", record),
                                     key=tenant.encode())
            ids.append(record["envelope"]["record_id"])
            if i % 30 == 0:
                meta = await work.producer.send(upload, value=b"\xc3\x01" + b"\x07" * 20,
                                                key=tenant.encode())
                bad.append(meta)
            if i == 1500:
                await work.producer.flush()
                await wait_for(lambda: _some_stored(work, region, ids), 60, "storing under way")
                procs.kill(first, signal.SIGKILL)  # without a chance to commit anything more
        await work.producer.flush()
        bad = [await m for m in bad]
        application = "mdmbus-pipeline-ap"
        await wait_for(lambda: _quiet(work, application), 30, "the killed process's sessions gone")
        before = await work.stored(region, ids)
        letters_before = await work.region_pool(region).fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant_id = $1", uuid.UUID(tenant))
        unnotified = await work.region_pool(region).fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant_id = $1 AND NOT notified",
            uuid.UUID(tenant))
        assert 0 < len(before) < len(ids), "the kill was not mid-stream"

        # Replay everything of this test: the group back to where its data began.
        await rewind(work.settings, group_name("pipeline", region), starts)
        port = free_port()
        procs.start("pipeline", region, key="pipeline-ap-again", metrics_port=port)

        async def all_stored() -> bool:
            return await work.stored(region, ids) == set(ids)
        await wait_for(all_stored, 120, "all 3000 records stored after the restart")
        await wait_for(lambda: _letters(work, tenant, len(bad)), 60, "every refusal a dead letter")
        await wait_for(lambda: _metric(port, "mdmbus_records_duplicate_total") >= len(before)
                       and _metric(port, "mdmbus_records_stored_total") >= len(ids) - len(before),
                       60, "the restarted process's counts")

        # Each record once, with its bytes; counted once across the two processes' lives.
        assert await work.region_pool(region).fetchval(
            "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(tenant)) == len(ids)
        assert _metric(port, "mdmbus_records_stored_total") == len(ids) - len(before), \
            "a replayed record was counted as stored again"
        assert _metric(port, "mdmbus_records_duplicate_total") == len(before)
        # Each refusal one dead letter, counted once; notices at most re-sent for the letters
        # a crash left unnotified.
        assert _metric(port, "mdmbus_dead_letters_total") == len(bad) - letters_before
        notices = [m for m in await work.read_all([deadletter]) if m.key == tenant.encode()
                   and m.offset >= notices_from.get(TopicPartition(deadletter, m.partition), 0)]
        sources = [json.loads(m.value)["source"]["offset"] for m in notices]
        assert set(sources) == {m.offset for m in bad}
        assert len(bad) <= len(sources) <= len(bad) + unnotified
        assert not await work.region_pool(region).fetchval(
            "SELECT count(*) FROM dead_letters WHERE tenant_id = $1 AND NOT notified",
            uuid.UUID(tenant))
        for other in REGIONS:
            if other != region:
                assert not await work.stored(other, ids)
    procs.assert_alive()


async def _some_stored(work: Workload, region: str, ids: list[str]) -> bool:
    return bool(await work.stored(region, ids[:100]))


async def _letters(work: Workload, tenant: str, count: int) -> bool:
    return await work.region_pool("ap").fetchval(
        "SELECT count(*) FROM dead_letters WHERE tenant_id = $1", uuid.UUID(tenant)) == count


async def test_a_rebalance_in_the_middle_of_a_batch_stores_nothing_twice_and_loses_nothing(
        stack, procs):
    """A worker is held in the middle of writing a batch (the store's records table locked),
    a second worker of the region joins meanwhile, and the group rebalances while the batch is
    still being written: the first worker finishes and commits it before giving its partitions
    up, so the second starts after it. Every record is stored once, none is processed twice
    (the duplicate counters stay 0), and the group's commits reach the topic's end."""
    region = "na"
    first_port, second_port = free_port(), free_port()
    procs.start("pipeline", region, key="pipeline-na-1", metrics_port=first_port)
    upload = topic_name(TopicKind.UPLOAD, region)
    group = group_name("pipeline", region)
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        tenant = await work.onboarded(region)
        ids: list[str] = []

        async def send(count: int) -> None:
            for _ in range(count):
                record = work.make("U1", tenant)
                await work.producer.send(upload, value=work.contract.codec.encode("U1", record),
                                         key=tenant.encode())
                ids.append(record["envelope"]["record_id"])
            await work.producer.flush()

        await send(200)
        await wait_for(lambda: _all_stored(work, region, ids), 60, "the first records stored")

        lock = await pg_connect(stack, region_database(region))
        admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
        await admin.start()
        try:
            transaction = lock.transaction()
            await transaction.start()
            await lock.execute("LOCK TABLE records IN EXCLUSIVE MODE")  # reads go on, writes wait
            await send(500)
            await wait_for(lambda: _writer_waits(lock, "mdmbus-pipeline-na"), 60,
                           "the worker held in the middle of writing a batch")
            procs.start("pipeline", region, key="pipeline-na-2", metrics_port=second_port)
            await wait_for(lambda: _group_state(admin, group, "PreparingRebalance"), 60,
                           "the rebalance begun while the batch is held")
            # The first worker does not give its partitions up while its batch is unwritten:
            # the group cannot settle (its rebalance timeout is minutes) while the lock holds.
            settled = await _settles_within(admin, group, 5.0)
            assert not settled, ("the group settled while a batch was still being written: "
                                 "its partitions were given up before its commit")
            await transaction.commit()
        finally:
            await lock.close()
            await admin.close()

        await wait_for(lambda: all(_metric_or_none(p, "mdmbus_records_in_total") is not None
                                   for p in (first_port, second_port)), 60, "both workers up")
        # an operator finds them by their command (faust would retitle them "[Faust:Worker]")
        for key in ("pipeline-na-1", "pipeline-na-2"):
            title = Path(f"/proc/{procs.procs[key].pid}/cmdline").read_bytes()
            assert b"mdmbus\x00process\x00pipeline" in title, title
        await send(500)
        await wait_for(lambda: _all_stored(work, region, ids), 120, "every record stored")
        assert await work.region_pool(region).fetchval(
            "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(tenant)) == len(ids)
        for port in (first_port, second_port):
            assert _metric(port, "mdmbus_records_duplicate_total") == 0, \
                "a record was processed twice: a batch was replayed across the rebalance"
        # each record counted as stored once, by one of the two workers
        assert sum(_metric(p, "mdmbus_records_stored_total")
                   for p in (first_port, second_port)) == len(ids)
        ends = await work.end_offsets(upload)
        await wait_for(lambda: _committed_to(stack, group, ends), 60,
                       "the group's commits at the topic's end")


async def _all_stored(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def _writer_waits(conn, application: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND wait_event_type = 'Lock'", application))


async def _settles_within(admin, group: str, seconds: float) -> bool:
    """Whether the group reaches Stable within ``seconds`` (polled; an absence is asserted
    over this window)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await _group_state(admin, group, "Stable"):
            return True
        await asyncio.sleep(0.1)
    return False


async def _group_state(admin, group: str, state: str) -> bool:
    [described] = await admin.describe_consumer_groups([group])
    return described.groups[0][2] == state


async def _committed_to(stack, group: str, ends: dict[TopicPartition, int]) -> bool:
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    finally:
        await admin.close()
    return all(committed[tp].offset >= end for tp, end in ends.items() if end)


def _metric_or_none(port: int, name: str) -> float | None:
    try:
        return _metric(port, name)
    except OSError:
        return None
