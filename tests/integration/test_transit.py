"""Transit copies (docs/design.md rule 6, section 5): once a record is durable in its store and
its batch committed, its copy in Kafka is unreadable within the topic's bound and gone from the
broker's disk within the other; a record not yet durable is never truncated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from mdmbus.stack import kafka, postgres
from mdmbus.topics import TopicKind, spec_of, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload

pytestmark = pytest.mark.integration

PROCESSES = [("pipeline", "all"), ("sweeper", "all")]

SPEED = 1.0


async def _readable(work: Workload, topic: str, record_ids: list[str]) -> set[str]:
    """Which of ``record_ids`` a consumer reading ``topic`` from its earliest offset sees."""
    wanted = {r.encode() for r in record_ids}
    found = set()
    for m in await work.read_all([topic]):
        found |= {r.decode() for r in wanted if m.value and r in m.value}
    return found


async def test_every_transit_topic_is_truncated_within_its_bound_once_stored(work):
    region = "ap"
    tenant = await work.onboarded(region)
    device, session = work.factory.uuid(), work.factory.uuid()
    far = work.clock.now_ms() + 3_600_000
    sent = {
        TopicKind.UPLOAD: [await work.produce("U9", tenant) for _ in range(5)],
        TopicKind.RELAY: [await work.produce("R1", tenant, device_id=device) for _ in range(5)],
        TopicKind.DEVICE_SESSIONS: [await work.produce(
            "device_session", tenant, device_id=device, session_id=session, event_type="START",
            expires_at=far)],
        TopicKind.DEVICE_COMMANDS: [await work.produce(
            "device_command", tenant, device_id=device, session_id=session) for _ in range(5)],
    }
    stored_ids = [r["envelope"]["record_id"] for kind in (TopicKind.UPLOAD, TopicKind.RELAY,
                                                          TopicKind.DEVICE_COMMANDS)
                  for r in sent[kind]]
    await wait_for(lambda: _all_stored(work, region, stored_ids), 60, "the records stored")
    durable_at = time.monotonic()
    for kind, records in sent.items():
        topic = topic_name(kind, region)
        ids = [r["envelope"]["record_id"] for r in records]
        bound = spec_of(kind).unreadable_s
        checked_at: list[float] = []

        async def none_readable(checked_at: list[float] = checked_at, topic: str = topic,
                                ids: list[str] = ids) -> bool:
            checked_at.append(time.monotonic())  # the state a successful read saw began here
            return await _none_readable(work, topic, ids)
        await wait_for(none_readable, bound + 1,
                       f"no processed copy readable in {topic} within {bound:g} s")
        assert checked_at[-1] - durable_at <= bound + 1
    # The consumer group committed past them, and the log start offsets moved with it.
    readable = await work.read_all([topic_name(k, region) for k in sent])
    assert not [m for m in readable if m.value and tenant.encode() in m.value]


async def _all_stored(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def _none_readable(work: Workload, topic: str, ids: list[str]) -> bool:
    return not await _readable(work, topic, ids)


async def test_records_not_yet_durable_are_never_truncated(work, stack):
    region = "na"
    tenant = await work.onboarded(region)
    topic = topic_name(TopicKind.UPLOAD, region)
    await asyncio.to_thread(postgres.stop, stack)
    try:
        ids = [(await work.produce("U1", tenant))["envelope"]["record_id"] for _ in range(10)]
        # The pipeline fetches them and cannot store them; for several truncation intervals
        # they must stay readable (checked on every poll, not once).
        until = time.monotonic() + 3 * spec_of(TopicKind.UPLOAD).unreadable_s
        while time.monotonic() < until:
            assert await _readable(work, topic, ids) == set(ids), "truncated before durable"
            await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(postgres.start, stack)
    for pool in work.pools.values():
        await pool.expire_connections()
    await wait_for(lambda: _all_stored(work, region, ids), 120, "stored once the store is back")
    await wait_for(lambda: _none_readable(work, topic, ids),
                   spec_of(TopicKind.UPLOAD).unreadable_s + 5, "truncated once stored")


def _on_disk(stack, topic: str, needle: bytes) -> list[str]:
    """The broker's segment files of ``topic`` that hold ``needle``."""
    data = kafka.kafka_paths(stack).data
    hits = []
    for path in Path(data).glob(f"{topic}-*/*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path))
    return hits


async def test_a_truncated_idle_partitions_copies_are_removed_from_disk(work, stack):
    """The partition goes idle with only truncated copies in its last segment; the pipeline
    appends a marker (the segment rolls), truncates past it, and the broker
    deletes the old segment at its next retention check."""
    region = "eu"
    tenant = await work.onboarded(region)
    canary = f"disk-canary-{uuid.uuid4().hex}"
    record = await work.produce("U12", tenant, build_version=canary)
    topic = topic_name(TopicKind.UPLOAD, region)
    await wait_for(lambda: _all_stored(work, region, [record["envelope"]["record_id"]]), 60,
                   "stored")
    assert _on_disk(stack, topic, canary.encode()), "the copy is on disk once written"
    bound = spec_of(TopicKind.UPLOAD).removed_s
    await wait_for(lambda: not _on_disk(stack, topic, canary.encode()), bound + 30,
                   f"the copy removed from disk (bound {bound:g} s after its commit)", 1.0)
