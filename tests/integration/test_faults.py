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

from mdmbus.cli.launcher import Launcher
from mdmbus.contract.limits import is_canonical_uuid
from mdmbus.contract.verdict import Refused, check_message
from mdmbus.regions import REGIONS
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.sweeper import PAST_DEADLINE_TOLERANCE_S
from mdmbus.services.stores.sealing import open_letter
from mdmbus.stack import kafka, postgres
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import ALL_PROCESSES, Workload, launcher

pytestmark = pytest.mark.integration


@dataclass
class Load:
    """What a workload sent, to check the final state against."""

    tenants: dict[str, str]  # tenant -> region
    uploads: dict[str, bytes] = field(default_factory=dict)  # record id -> bytes sent
    relays: dict[str, str] = field(default_factory=dict)  # record id -> tenant


@pytest.fixture
def procs(stack, tmp_path):
    p = launcher(stack, tmp_path, speed=1.0)
    yield p
    p.stop()


def _start_all(procs) -> None:
    for name, region in ALL_PROCESSES:
        procs.start(name, region)


def _workload(stack, procs) -> Workload:
    return Workload(stack, procs.clock, seed=uuid.uuid4().int, tokens_dir=procs.log_dir / "tokens")


async def _tenants(work: Workload, per_region: int = 2) -> dict[str, str]:
    tenants = {}
    for region in REGIONS:
        for _ in range(per_region):
            tenant = await work.onboard(region)
            tenants[tenant] = region
            work.connect_cm(tenant)  # its CM connector downloads its relay records

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
        region = load.tenants[tenant]
        await _send_retrying(work, topic_name(TopicKind.UPLOAD, region), value,
                             work.contract.key(kind, record))
        load.uploads[record["envelope"]["record_id"]] = value
        if i % relay_every == 0:
            relay = work.make(f"R{rng.randrange(1, 7)}", tenant, device_id=work.factory.uuid())
            kind = relay["envelope"]["kind"]
            await _send_retrying(work, topic_name(TopicKind.RELAY, region),
                                 work.contract.codec.encode(kind, relay),
                                 work.contract.key(kind, relay))
            load.relays[relay["envelope"]["record_id"]] = tenant
        if i % pause_every == 0:
            await asyncio.sleep(0)  # let the fault task run


async def _send_retrying(work: Workload, topic: str, value: bytes, key: bytes) -> None:
    from aiokafka.errors import KafkaError
    for _attempt in range(600):
        try:
            await work.send_raw(topic, value, key)
            return
        except KafkaError:
            await asyncio.sleep(0.1)
    raise AssertionError("the broker did not come back within a minute")


async def _check(work: Workload, load: Load, procs: Launcher, timeout_s: float = 240) -> None:
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
        bodies = await work.bodies(region, ids)
        assert len(bodies) == len(ids)  # the primary key makes "twice" impossible; none lost
        for rid, body in bodies.items():
            assert body == load.uploads[rid], "stored bytes differ"
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
    # Nothing deleted early: each cloud copy went after CM had received it, and every one of
    # them was deleted by an acknowledgement, once.
    received = {r["record_id"]: r["received_at"] for r in await work.cm.fetch(
        "SELECT record_id, received_at FROM relayed_records WHERE record_id = ANY($1::uuid[])",
        relay_ids)}
    deleted_at: dict = {}
    for region in REGIONS:
        for row in await work.region_pool(region).fetch(
                "SELECT record_ids, deleted_at_real FROM deletion_audit WHERE"
                " rule = 'delete_after_download' AND record_ids && $1::uuid[]", relay_ids):
            for rid in row["record_ids"]:
                if rid in received:
                    assert rid not in deleted_at, f"{rid} deleted (and audited) twice"
                    deleted_at[rid] = row["deleted_at_real"]
    assert set(deleted_at) == set(relay_ids), "a relay record's deletion is not audited"
    for rid, when in deleted_at.items():
        assert when >= received[rid], "deleted before CM had it"
    # Nothing kept past its deadline, in any store.
    late = work.clock.now_dt() - dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * work.clock.speed)
    for region in REGIONS:
        assert sum((await rows_past_deadline(work.region_pool(region), late)).values()) == 0


def _tenant_of(work: Workload, value: bytes) -> str:
    return str(work.contract.codec.decode(value).record["envelope"]["tenant_id"])


async def _run(work: Workload, procs: Launcher, count: int, fault) -> Load:
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
    _start_all(procs)
    rng = random.Random()
    async with _workload(stack, procs) as work:
        async def fault(load: Load) -> None:
            for round_ in range(3):
                await _once_stored(work, load, 300 * (round_ + 1))
                for name, region in ALL_PROCESSES:
                    await asyncio.sleep(rng.random() * 0.5)  # a random moment, not a sync
                    procs.kill(name if region is None else f"{name}-{region}", signal.SIGKILL)
                    procs.start(name, region)
        await _run(work, procs, 1500, fault)


async def test_broker_stopped_and_restarted_mid_load(stack, procs):
    _start_all(procs)
    async with _workload(stack, procs) as work:
        async def fault(load: Load) -> None:
            await _once_stored(work, load, 200)
            await asyncio.to_thread(kafka.stop, stack)
            await asyncio.to_thread(kafka.start, stack, lambda _: None)
        await _run(work, procs, 1200, fault)


async def test_postgres_stopped_and_restarted_mid_load(stack, procs):
    _start_all(procs)
    async with _workload(stack, procs) as work:
        async def fault(load: Load) -> None:
            await _once_stored(work, load, 200)
            await asyncio.to_thread(postgres.stop, stack)
            # Producing goes on while the stores are down; the processors hold their offsets.
            await asyncio.sleep(0)
            await asyncio.to_thread(postgres.start, stack)
            for pool in work.pools.values():
                await pool.expire_connections()
        await _run(work, procs, 1200, fault)


async def test_scale_out_two_workers_share_partitions_and_survive_losing_one(stack, procs):
    """Two workers of every region share its partitions; one is killed mid-load and the other
    takes its partitions over, storing nothing twice and losing nothing."""
    for name, region in ALL_PROCESSES:
        if name != "pipeline":
            procs.start(name, region)
    for region in REGIONS:
        procs.start("pipeline", region, key=f"pipeline-{region}-1")
        procs.start("pipeline", region, key=f"pipeline-{region}-2")
    # a region's four record topics of six partitions, and its deletion requests' three
    total = 4 * 6 + 3
    async with _workload(stack, procs) as work:
        async def fault(load: Load) -> None:
            for region in REGIONS:
                await wait_for(lambda r=region: all(0 < _assigned(procs, f"pipeline-{r}-{n}", r)
                                                    < total for n in (1, 2)), 60,
                               f"the two workers of {region} sharing its partitions")
            await _once_stored(work, load, 400)
            for region in REGIONS:  # their partitions move to the other worker of the region
                procs.kill(f"pipeline-{region}-2", signal.SIGKILL)
        await _run(work, procs, 1500, fault)
    for region in REGIONS:  # once the killed worker's session has timed out
        await wait_for(lambda r=region: _assigned(procs, f"pipeline-{r}-1", r) == total, 60,
                       f"the remaining worker of {region} taking the lost worker's partitions")


def _assigned(procs, key: str, region: str) -> int:
    """How many partitions the worker's latest assignment holds (mdmbus.streams.runtime logs
    each one)."""
    lines = [line for line in procs.tail(key, 5000).splitlines() if f"{region}: assigned [" in line]
    return lines[-1].split(f"{region}: assigned", 1)[1].count("'mdm.") if lines else 0


async def test_ten_thousand_poison_messages_mixed_into_valid_traffic(stack, procs):
    """Random, truncated, bit-flipped, wrong-fingerprint, oversized and valid-but-rule-breaking
    messages among valid ones, on every region's upload topic: no process crashes or stalls,
    and every message is accounted for by its source offset: stored as exactly the record its
    bytes are (a bit flip may still be a valid record), or a dead letter with the reason the
    contract and the rules give for those bytes."""
    procs.start("pipeline", "all")
    rng = random.Random(20261124)
    async with _workload(stack, procs) as work:
        load = Load(await _tenants(work, per_region=1))
        tenants = list(load.tenants)
        codec, registry = work.contract.codec, work.contract
        futures = []  # (future of the metadata, value, tenant, expected reason or None)
        for i in range(14_000):
            tenant = rng.choice(tenants)
            topic = topic_name(TopicKind.UPLOAD, load.tenants[tenant])
            key = tenant.encode()
            base = codec.encode("U1", work.make("U1", tenant))
            kind = i % 7 if i % 6 else None
            if kind is None:
                value = codec.encode("U9", work.make("U9", tenant))
            elif kind == 0:
                value = rng.randbytes(rng.randrange(0, 200))
            elif kind == 1:
                value = base[:rng.randrange(10, len(base) - 1)]
            elif kind == 2:
                b = bytearray(base)
                b[rng.randrange(10, len(b))] ^= 1 << rng.randrange(8)
                value = bytes(b)
            elif kind == 3:
                value = b"\xc3\x01" + rng.randbytes(8) + base[10:]
            elif kind == 4:
                value = base + rng.randbytes(600 * 1024) if i % 500 == 4 else \
                    base[:2] + b"\x00" + base[3:]
            elif kind == 5:
                value = codec.encode("U3", work.make("U3", tenant, subject_name_format=
                                     "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"))
            else:
                stranger = work.factory.uuid()
                value = codec.encode("U1", work.make("U1", stranger))
                key = stranger.encode()
            # What the contract says of these bytes, as the pipeline will see them.
            verdict = check_message(registry, value, key, TopicKind.UPLOAD)
            expected = verdict.reason if isinstance(verdict, Refused) else None
            futures.append((await work.producer.send(topic, value=value, key=key), value,
                            expected))
        await work.producer.flush()
        sent = [(await f, value, expected) for f, value, expected in futures]
        # Poison: whatever must not be stored (refused by the contract, or by the rules: a
        # valid record of a tenant never onboarded).
        poison = [s for s in sent if s[2] is not None or str(
            codec.decode(s[1]).record["envelope"]["tenant_id"]) not in load.tenants]
        assert len(poison) >= 10_000

        async def accounted() -> list | None:
            procs.assert_alive()
            left = await _unaccounted(work, load, sent)
            return None if left else ["all"]
        await wait_for(accounted, 300, "every message stored or dead-lettered", 2.0)
        assert not await _unaccounted(work, load, sent, final=True)
        # ... and no poison is also in a store: a refused record that decodes (a private key
        # in a valid record, a tenant never onboarded) is a dead letter only.
        refused_ids = set()
        for _meta, value, _expected in poison:
            try:
                refused_ids.add(str(codec.decode(value).record["envelope"]["record_id"]))
            except Exception:  # bytes that are no record at all have no id to store
                continue
        poisoned = {(m.topic, m.partition, m.offset) for m, _, _ in poison}
        valid_ids = {str(codec.decode(v).record["envelope"]["record_id"]) for m, v, e in sent
                     if (m.topic, m.partition, m.offset) not in poisoned}
        refused_ids -= valid_ids  # a flipped copy may keep a valid record's id
        refused_ids = {i for i in refused_ids if is_canonical_uuid(i)}  # else never a row id
        stored = await work.anywhere(refused_ids)
        assert not any(stored.values()), "refused records stored: " + ", ".join(
            f"{len(ids)} in {region} (e.g. {sorted(ids)[:3]})" for region, ids in stored.items()
            if ids)
    procs.assert_alive()


async def _unaccounted(work: Workload, load: Load, sent: list, final: bool = False) -> list:
    """The messages not (yet) where their bytes say they belong; with ``final``, every
    mismatch is an assertion naming the message."""
    from collections import defaultdict
    letters: dict = {}
    for region in REGIONS:
        for row in await work.region_pool(region).fetch(
                "SELECT source_topic, source_partition, source_offset, reason, body, redacted,"
                " tenant_id, record_id, wrapped_key, kek_id"
                " FROM dead_letters WHERE source_topic = $1 AND source_offset = ANY($2::bigint[])",
                topic_name(TopicKind.UPLOAD, region),
                [m.offset for m, _, _ in sent if m.topic.split(".")[1] == region]):
            letters[(row["source_topic"], row["source_partition"], row["source_offset"])] = {
                **row, "body": open_letter(row)}
    valid_ids = defaultdict(dict)
    for meta, value, expected in sent:
        if expected is None:
            kind, record = work.contract.codec.decode(value)
            valid_ids[meta.topic.split(".")[1]][record["envelope"]["record_id"]] = (meta, value)
    bodies = {}
    for region, ids in valid_ids.items():
        bodies.update(await work.bodies(region, list(ids)))
    left = []
    for meta, value, expected in sent:
        source = (meta.topic, meta.partition, meta.offset)
        letter = letters.get(source)
        if expected is not None:
            ok = letter is not None and letter["reason"] == expected
            if final:
                assert letter is not None, f"poison at {source} ({expected}) is nowhere"
                assert letter["reason"] == expected, (source, letter["reason"], expected)
                assert b"PRIVATE KEY" not in (letter["body"] or b"")
                assert letter["reason"] != "processing_error", "an input fault reached the code"
        else:
            record_id = str(work.contract.codec.decode(value).record["envelope"]["record_id"])
            tenant = str(work.contract.codec.decode(value).record["envelope"]["tenant_id"])
            if tenant in load.tenants:  # stored as exactly this record
                ok = bodies.get(record_id) == value
                if final:
                    assert ok, f"valid message at {source} not stored as itself"
            else:  # a valid record of a tenant never onboarded (e.g. a flipped tenant id)
                ok = letter is not None and letter["reason"] == "tenant_not_onboarded"
                if final:
                    assert ok, (source, letter and letter["reason"])
        if not ok:
            left.append(source)
    return left
