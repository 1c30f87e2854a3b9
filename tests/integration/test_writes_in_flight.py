"""With two store writes in flight, a worker killed at any moment has committed no offset past
a row that is not durable: after a SIGKILL (and once its database sessions are gone, so no
transaction of it can still commit), every record below the group's committed offset is in
the store. The oracles are Kafka's committed offsets and the store's rows, read directly."""

from __future__ import annotations

import signal
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from mdmbus.connections import kafka_options
from mdmbus.identities import ADMIN
from mdmbus.topics import TopicKind, group_name, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher

pytestmark = pytest.mark.integration

REGION = "na"


async def _committed(admin: AIOKafkaAdminClient, tp: TopicPartition) -> int:
    got = await admin.list_consumer_group_offsets(group_name("pipeline", REGION), partitions=[tp])
    return got[tp].offset if tp in got and got[tp].offset >= 0 else -1


async def test_a_worker_killed_with_two_writes_in_flight_committed_nothing_not_durable(stack,
                                                                                   tmp_path):
    # Small batches: many batches, so the kill lands with writes in flight.
    procs = launcher(stack, tmp_path, speed=1.0, MDMBUS_BATCH_SIZE="50",
                     MDMBUS_WRITES_IN_FLIGHT="2")
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        key = procs.start("pipeline", REGION)
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
            tenant = await work.onboarded(REGION)
            upload = topic_name(TopicKind.UPLOAD, REGION)
            by_offset: dict[int, str] = {}
            partition = None
            sent = []
            for _ in range(20_000):
                record = work.make("U1", tenant)
                sent.append((record["envelope"]["record_id"], await work.producer.send(
                    upload, value=work.contract.codec.encode("U1", record),
                    key=tenant.encode())))
            for record_id, future in sent:
                meta = await future
                partition = meta.partition
                by_offset[meta.offset] = record_id
            tp = TopicPartition(upload, partition)
            first = min(by_offset)

            async def under_way() -> bool:
                return await _committed(admin, tp) > first + 200
            await wait_for(under_way, 120, "some batches committed")
            procs.kill(key, signal.SIGKILL)

            async def quiet() -> bool:
                return not await work.region_pool(REGION).fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    f"mdmbus-pipeline-{REGION}")
            await wait_for(quiet, 30, "the killed worker's sessions gone")

            committed = await _committed(admin, tp)
            stored = await work.stored(REGION, by_offset.values())
            below = [rid for off, rid in by_offset.items() if off < committed]
            missing = [rid for rid in below if rid not in stored]
            assert below, "nothing committed before the kill"
            assert len(stored) < len(by_offset), "the kill came after everything was stored"
            assert not missing, (f"{len(missing)} records below the committed offset "
                                 f"{committed} are not durable")
            # Writes in flight mean rows durable beyond the commit are normal (replayed,
            # idempotently): what is stored is a superset of what is committed.
            assert len(stored) >= len(below)
    finally:
        procs.stop()
        await admin.close()
