"""Fault tests: under a running workload, kill processes, restart the broker and the database,
scale out and in, and feed poison; then check the final state record by record.

Every valid record is stored exactly once with the bytes it was sent with, every relay record
reached CM and its cloud copy is gone, every invalid record is a dead letter with its reason,
and no process crashed or stalled.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import uuid
from dataclasses import dataclass, field

import pytest

from mdmbus import topics
from mdmbus.regions import REGIONS
from mdmbus.stack import kafka, postgres
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.sweeper import PAST_DEADLINE_TOLERANCE_S
from tests.conftest import wait_for
from tests.integration.harness import Processes, Workload

pytestmark = pytest.mark.integration


@dataclass
class Load:
    """What a workload sent, to check the final state against."""

    tenants: dict[str, str]  # tenant -> region
    uploads: dict[str, bytes] = field(default_factory=dict)  # record id -> bytes sent
    relays: dict[str, str] = field(default_factory=dict)  # record id -> tenant


@pytest.fixture
def procs(stack, tmp_path):
    p = Processes(stack, tmp_path, speed=1.0)
    yield p
    p.stop()


async def _tenants(work: Workload, per_region: int = 2) -> dict[str, str]:
    tenants = {}
    for region in REGIONS:
        for _ in range(per_region):
            tenants[await work.onboard(region)] = region

    async def onboarded() -> bool:
        return all([await work.tenant_region(t) == r for t, r in tenants.items()])
    await wait_for(onboarded, 60, "tenants onboarded")
    return tenants


async def _produce(work: Workload, load: Load, count: int, relay_every: int = 10,
                   pause_every: int = 200) -> None:
    """Sends ``count`` upload records (and a relay record every ``relay_every``), resending on
    broker errors: a producer that keeps going while the servers are disturbed."""
    rng = random.Random(count)
    tenants = list(load.tenants)
    for i in range(count):
        tenant = rng.choice(tenants)
        kind = f"U{rng.randrange(1, 15)}"
        record = work.make(kind, tenant)
        value = work.contract.codec.encode(kind, record)
        await _send_retrying(work, topics.UPLOAD, value, work.contract.key(kind, record))
        load.uploads[record["envelope"]["record_id"]] = value
        if i % relay_every == 0:
            relay = work.make(f"R{rng.randrange(1, 7)}", tenant, device_id=work.factory.uuid())
            kind = relay["envelope"]["kind"]
            await _send_retrying(work, topics.RELAY, work.contract.codec.encode(kind, relay),
                                 work.contract.key(kind, relay))
            load.relays[relay["envelope"]["record_id"]] = tenant
        if i % pause_every == 0:
            await asyncio.sleep(0)  # let the fault task run


async def _send_retrying(work: Workload, topic: str, value: bytes, key: bytes) -> None:
    from aiokafka.errors import KafkaError
    for attempt in range(600):
        try:
            await work.send_raw(topic, value, key)
            return
        except KafkaError:
            await asyncio.sleep(0.1)
    raise AssertionError("the broker did not come back within a minute")


async def _check(work: Workload, load: Load, procs: Processes, timeout_s: float = 240) -> None:
    """Record by record: every upload stored once with its bytes, every relay in CM and gone
    from the cloud, nothing in a region it does not belong to."""
    by_region: dict[str, list[str]] = {r: [] for r in REGIONS}
    for rid, value in load.uploads.items():
        by_region[load.tenants[_tenant_of(work, value)]].append(rid)

    async def all_stored() -> bool:
        procs.assert_alive()
        for region, ids in by_region.items():
            if len(await work.stored(region, ids)) != len(ids):
                return False
        return True
    await wait_for(all_stored, timeout_s, f"{len(load.uploads)} uploads stored")
    for region, ids in by_region.items():
        rows = await work.region_pool(region).fetch(
            "SELECT record_id, body FROM records WHERE record_id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids])
        assert len(rows) == len(ids)  # the primary key makes "twice" impossible; none lost
        for row in rows:
            assert row["body"] == load.uploads[str(row["record_id"])], "stored bytes differ"
        for other in REGIONS:
            if other != region:
                assert not await work.stored(other, ids), f"{region} records found in {other}"
    relay_ids = [uuid.UUID(i) for i in load.relays]

    async def relayed() -> bool:
        procs.assert_alive()
        in_cm = await work.cm.fetchval(
            "SELECT count(*) FROM relayed_records WHERE record_id = ANY($1::uuid[])", relay_ids)
        if in_cm != len(relay_ids):
            return False
        for region in REGIONS:
            if await work.stored(region, list(load.relays)):
                return False
        return True
    await wait_for(relayed, timeout_s, f"{len(relay_ids)} relay records in CM, gone from the cloud")
    # Nothing deleted early: each cloud copy went after CM had committed it.
    received = {r["record_id"]: r["received_at"] for r in await work.cm.fetch(
        "SELECT record_id, received_at FROM relayed_records WHERE record_id = ANY($1::uuid[])",
        relay_ids)}
    for region in REGIONS:
        for row in await work.region_pool(region).fetch(
                "SELECT record_ids, deleted_at_real FROM deletion_audit WHERE"
                " rule = 'delete_after_download' AND record_ids && $1::uuid[]", relay_ids):
            for rid in row["record_ids"]:
                if rid in received:
                    assert row["deleted_at_real"] >= received[rid], "deleted before CM had it"
    # Nothing kept past its deadline, in any store.
    late = work.clock.now_dt() - dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * work.clock.speed)
    for region in REGIONS:
        assert sum((await rows_past_deadline(work.region_pool(region), late)).values()) == 0


def _tenant_of(work: Workload, value: bytes) -> str:
    return str(work.contract.codec.decode(value).record["envelope"]["tenant_id"])


async def _run(work: Workload, procs: Processes, count: int, fault) -> Load:
    load = Load(await _tenants(work))
    producing = asyncio.create_task(_produce(work, load, count))
    await fault(load)
    await producing
    await _check(work, load, procs)
    return load


async def _once_stored(work: Workload, load: Load, n: int) -> None:
    """Waits until ``n`` of the uploads sent so far are stored: the fault hits mid-load."""
    async def enough() -> bool:
        stored = 0
        for region in REGIONS:
            stored += await work.region_pool(region).fetchval(
                "SELECT count(*) FROM records WHERE record_id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in list(load.uploads)])
        return stored >= n
    await wait_for(enough, 120, f"{n} records stored before the fault")


async def test_every_process_killed_at_random_moments_and_restarted(stack, procs):
    procs.start()
    rng = random.Random()
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        async def fault(load: Load) -> None:
            for round_ in range(3):
                await _once_stored(work, load, 300 * (round_ + 1))
                for name in ("pipeline", "cm-connector", "sweeper"):
                    await asyncio.sleep(rng.random() * 0.5)  # a random moment, not a sync
                    procs.kill(name, signal.SIGKILL)
                    procs.start(name)
        await _run(work, procs, 1500, fault)


async def test_broker_stopped_and_restarted_mid_load(stack, procs):
    procs.start()
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        async def fault(load: Load) -> None:
            await _once_stored(work, load, 200)
            await asyncio.to_thread(kafka.stop, stack)
            await asyncio.to_thread(kafka.start, stack, lambda _: None)
        await _run(work, procs, 1200, fault)


async def test_postgres_stopped_and_restarted_mid_load(stack, procs):
    procs.start()
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        async def fault(load: Load) -> None:
            await _once_stored(work, load, 200)
            await asyncio.to_thread(postgres.stop, stack)
            # Producing goes on while the stores are down; the processors hold their offsets.
            await asyncio.sleep(0)
            await asyncio.to_thread(postgres.start, stack)
            for pool in work.pools.values():
                await pool.expire_connections()
        await _run(work, procs, 1200, fault)


async def test_scale_out_two_workers_share_partitions_and_survive_losing_one(stack, procs, tmp_path):
    procs.start("cm-connector", "sweeper")
    second = Processes(stack, tmp_path / "second", speed=procs.speed, origin=procs.origin)
    (tmp_path / "second").mkdir()
    procs.start("pipeline")
    second.start("pipeline")
    try:
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
            async def fault(load: Load) -> None:
                await _once_stored(work, load, 400)
                second.kill("pipeline", signal.SIGKILL)  # its partitions move to the other
            await _run(work, procs, 1500, fault)
        assert "Setting newly assigned partitions" in procs.tail("pipeline", 400)
    finally:
        second.stop()


async def test_ten_thousand_poison_messages_mixed_into_valid_traffic(stack, procs):
    """Random, truncated, bit-flipped, wrong-fingerprint, oversized and valid-but-rule-breaking
    messages among valid ones: no process crashes or stalls, every valid neighbour is stored,
    and every poison message is a dead letter with its reason (or, for a bit flip that still
    decodes to a valid record, stored as that record)."""
    procs.start("pipeline")
    rng = random.Random(20261124)
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
        load = Load(await _tenants(work, per_region=1))
        tenants = list(load.tenants)
        start = await work.end_offsets(topics.DEAD_LETTER)
        codec = work.contract.codec
        poison_keys: dict[bytes, str] = {}  # key -> expected reason ("*" = any)
        flipped: list[bytes] = []
        sent_poison = 0
        for i in range(12_000):
            tenant = rng.choice(tenants)
            if i % 6 == 0:
                record = work.make("U9", tenant)
                value = codec.encode("U9", record)
                await work.producer.send(topics.UPLOAD, value=value, key=tenant.encode())
                load.uploads[record["envelope"]["record_id"]] = value
                continue
            key = f"poison-{i}".encode()
            kind = i % 7
            base = codec.encode("U1", work.make("U1", tenant))
            if kind == 0:
                value, reason = rng.randbytes(rng.randrange(0, 200)), "*"
            elif kind == 1:
                value, reason = base[:rng.randrange(10, len(base) - 1)], "*"
            elif kind == 2:
                b = bytearray(base)
                b[rng.randrange(10, len(b))] ^= 1 << rng.randrange(8)
                value, reason = bytes(b), "*"
                flipped.append(key)
            elif kind == 3:
                value, reason = b"\xc3\x01" + rng.randbytes(8) + base[10:], "unknown_fingerprint"
            elif kind == 4:
                value = base + rng.randbytes(600 * 1024) if i % 500 == 4 else base[:2] + b"\x00" + base[3:]
                reason = "oversized" if i % 500 == 4 else "*"
            elif kind == 5:
                rec = work.make("U3", tenant, subject_name_format=
                                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----")
                value, reason = codec.encode("U3", rec), "private_key_material"
            else:
                stranger = work.factory.uuid()
                value, reason = codec.encode("U1", work.make("U1", stranger)), "tenant_not_onboarded"
            await work.producer.send(topics.UPLOAD, value=value, key=key)
            poison_keys[key] = reason
            sent_poison += 1
        await work.producer.flush()
        assert sent_poison >= 10_000

        await _check(work, load, procs, timeout_s=300)
        letters: dict[bytes, str] = {}

        async def all_dead() -> bool:
            procs.assert_alive()
            for m in await work.dead_letters(start, timeout_s=3):
                if m.key in poison_keys:
                    letters[m.key] = dict(m.headers)["mdmbus.reason"].decode()
            missing = set(poison_keys) - set(letters) - set(flipped)
            return not missing
        await wait_for(all_dead, 300, "every poison message in the dead letters")
        for key, reason in poison_keys.items():
            if key in letters:
                assert reason in ("*", letters[key]), f"{key!r}: {letters[key]} != {reason}"
                assert letters[key] != "processing_error", "an input fault reached the code"
        # A bit flip that still decodes validly was stored as a record, not lost.
        unaccounted = [k for k in flipped if k not in letters]
        assert len(unaccounted) < len(flipped) / 2
