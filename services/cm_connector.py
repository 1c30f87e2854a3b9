"""The CM-side connector: downloads relay records into the Configuration Manager database and
acknowledges each one after its commit, so the cloud copy may be deleted (rule 2).

Order per batch: write to CM in one transaction (durable) -> send the acks and wait for the
broker -> commit the consumer offsets. A crash anywhere replays the batch: the CM write is
idempotent and a repeated ack deletes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from mdmbus import codec, topics
from mdmbus.clock import Clock
from mdmbus.contract import Registry, ValidationError, default_registry, validate
from mdmbus.metrics import Metrics, serve
from mdmbus.regions import CM_DATABASE
from mdmbus.settings import Settings
from mdmbus.services.stores.schema import ensure_cm_schema
from mdmbus.services.stores.retry import until_written

__all__ = ["CmConnector", "run", "GROUP"]

GROUP = "mdmbus-cm-connector"
log = logging.getLogger("mdmbus.cm_connector")

_INSERT = """
INSERT INTO relayed_records (record_id, tenant_id, kind, device_id, event_time, body)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[], $6::bytea[])
ON CONFLICT (record_id) DO NOTHING
"""


class CmConnector:
    def __init__(self, settings: Settings, metrics: Metrics, contract: Registry | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = Clock.from_settings(settings)
        self.contract = contract or default_registry()

    def _relay_record(self, value: bytes | None) -> tuple | None:
        """Only valid R1..R6 records go to CM; the pipeline dead-letters the rest."""
        if value is None:
            return None
        try:
            kind, record = self.contract.codec.decode(value)
            if not kind.startswith("R"):
                return None  # inventory cache stays in the cloud
            validate(kind, record, self.contract)
        except (codec.CodecError, ValidationError):
            return None
        env = record["envelope"]
        device = env.get("device_id")
        return (uuid.UUID(str(env["record_id"])), uuid.UUID(str(env["tenant_id"])), kind,
                None if device is None else uuid.UUID(str(device)), env["event_time"], value)

    async def run(self, stop: asyncio.Event) -> None:
        async def open_pool() -> asyncpg.Pool:
            pool = await asyncpg.create_pool(self.settings.pg_dsn(CM_DATABASE), min_size=1, max_size=2)
            async with pool.acquire() as conn:
                await ensure_cm_schema(conn)
            return pool
        pool = await until_written(open_pool,
                                   lambda exc: self.metrics.store_batches.labels("cm", "error").inc())
        consumer = AIOKafkaConsumer(topics.RELAY, bootstrap_servers=self.settings.kafka_bootstrap,
                                    group_id=GROUP, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                    enable_idempotence=True, linger_ms=5)
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200,
                                                 max_records=self.settings.batch_size)
                rows = [r for msgs in batches.values() for m in msgs
                        if (r := self._relay_record(m.value)) is not None]
                if rows:
                    await self._download(pool, producer, rows)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
            await pool.close()

    async def _download(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, rows: list[tuple]) -> None:
        columns = list(zip(*rows))

        async def write() -> None:
            async with pool.acquire() as conn:
                await conn.execute(_INSERT, *columns)
        await until_written(write, lambda exc: self.metrics.store_batches.labels("cm", "error").inc())
        self.metrics.store_batches.labels("cm", "ok").inc()
        committed = self.clock.now_ms()
        futures = []
        for record_id, tenant_id, kind, *_ in rows:
            ack = {"envelope": {"record_id": str(uuid.uuid4()), "tenant_id": str(tenant_id),
                                "device_id": None, "user_id": None, "event_time": committed,
                                "kind": "relay_ack"},
                   "relay_record_id": str(record_id), "cm_committed_at": committed}
            value = self.contract.codec.encode("relay_ack", ack)
            futures.append(await producer.send(topics.RELAY_ACK, value=value,
                                               key=self.contract.key("relay_ack", ack)))
            self.metrics.relay_downloaded.labels(kind).inc()
        await asyncio.gather(*futures)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    metrics = Metrics(CollectorRegistry()).prime(("cm",))
    serve(metrics, settings.metrics_port, settings.metrics_addr)
    await CmConnector(settings, metrics).run(stop)
