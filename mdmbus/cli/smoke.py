"""`mdmbus smoke`: proof that the running stack carries bytes and stores rows.

A probe message goes through Kafka and back, and a row is written to and read from every
region's database; each step prints how long it took.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.regions import all_databases
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name

SMOKE = topic_name(TopicKind.SMOKE)

__all__ = ["run_smoke"]


async def _kafka_round_trip(settings: Settings, count: int) -> float:
    probe = uuid.uuid4().hex.encode()
    start = time.perf_counter()
    producer = AIOKafkaProducer(**kafka_options(settings, settings.kafka_principal, acks="all"))
    await producer.start()
    try:
        first = None
        for i in range(count):
            meta = await producer.send_and_wait(SMOKE, b"%d" % i, key=probe)
            first = meta.offset if first is None else first
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**kafka_options(settings, settings.kafka_principal,
                                                enable_auto_commit=False))
    await consumer.start()
    try:
        tp = TopicPartition(SMOKE, 0)
        consumer.assign([tp])
        consumer.seek(tp, first)
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"smoke: read back {len(seen)} of {count} probe messages in 30 s")
            batch = await consumer.getmany(tp, timeout_ms=1000)
            seen += [m.value for m in batch.get(tp, []) if m.key == probe]
        if seen != [b"%d" % i for i in range(count)]:
            raise RuntimeError("smoke: probe messages came back out of order")
    finally:
        await consumer.stop()
    return time.perf_counter() - start


async def _database_round_trip(settings: Settings, database: str) -> float:
    start = time.perf_counter()
    conn = await pg_connect(settings, database)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE smoke_probe (id uuid PRIMARY KEY) ON COMMIT DROP")
            probe = uuid.uuid4()
            await conn.execute("INSERT INTO smoke_probe VALUES ($1)", probe)
            if await conn.fetchval("SELECT id FROM smoke_probe") != probe:
                raise RuntimeError(f"smoke: {database} did not return the row just written")
    finally:
        await conn.close()
    return time.perf_counter() - start


async def _smoke(settings: Settings) -> None:
    took = await _kafka_round_trip(settings, 100)
    print(f"smoke: kafka {settings.kafka_bootstrap}: 100 messages produced and read back in "
          f"order in {took * 1000:.0f} ms")
    for database in all_databases():
        took = await _database_round_trip(settings, database)
        print(f"smoke: postgres {database}: row written and read back in {took * 1000:.0f} ms")


def run_smoke(settings: Settings) -> int:
    try:
        asyncio.run(_smoke(settings))
    except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
        print(f"smoke: FAILED: {exc}")
        return 1
    print("smoke: ok")
    return 0
