"""The broker really carries records: 10,000 through aiokafka, in order per key."""

from __future__ import annotations

import collections

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mdmbus.connections import kafka_options
from mdmbus.identities import ADMIN
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

KEYS = 100
PER_KEY = 100


async def test_ten_thousand_records_come_back_in_order_per_key(stack, make_topic):
    topic = await make_topic("roundtrip", partitions=6)
    producer = AIOKafkaProducer(**kafka_options(stack, ADMIN), acks="all",
                                linger_ms=5, enable_idempotence=True)
    await producer.start()
    try:
        # Interleave keys so ordering is tested across batches and partitions.
        for seq in range(PER_KEY):
            for k in range(KEYS):
                await producer.send(topic, key=b"key-%03d" % k, value=b"%d" % seq)
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, **kafka_options(stack, ADMIN),
                                group_id=f"{topic}-reader", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    by_key: dict[bytes, list[int]] = collections.defaultdict(list)
    partitions_of: dict[bytes, set[int]] = collections.defaultdict(set)
    try:
        async def all_read() -> bool:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                for m in messages:
                    by_key[m.key].append(int(m.value))
                    partitions_of[m.key].add(tp.partition)
            return sum(map(len, by_key.values())) >= KEYS * PER_KEY

        await wait_for(all_read, 60, "10,000 records to be read back")
    finally:
        await consumer.stop()

    assert len(by_key) == KEYS
    for key, seqs in by_key.items():
        assert seqs == list(range(PER_KEY)), f"{key!r} out of order or duplicated"
        assert len(partitions_of[key]) == 1, f"{key!r} spread over {partitions_of[key]}"
    # The keys really were spread out, so per-key order is not just single-partition order.
    assert len(set().union(*partitions_of.values())) == 6
