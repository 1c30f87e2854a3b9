"""Runs the pipeline's processes for integration tests, and a workload client to drive them.

The processes are real (`mdmbus process ...` subprocesses against the test stack), share one
accelerated clock with the test, and are stopped at the end of the module that started them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.contract import default_registry
from mdmbus.regions import CM_DATABASE, REGIONS, region_database
from mdmbus.settings import Settings
from mdmbus.services.simulators.records import RecordFactory
from mdmbus.services.stores.schema import ensure_cm_schema, ensure_region_schema

__all__ = ["Processes", "Workload", "COUNTRY_OF", "end_process"]

COUNTRY_OF = {"na": "US", "eu": "DE", "ap": "JP"}


def end_process(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Processes:
    settings: Settings
    log_dir: Path
    speed: float
    origin: float = field(default_factory=time.time)
    #: /metrics port of each process (none where not given).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        return Clock(self.speed, self.origin)

    def env(self) -> dict[str, str]:
        return dict(os.environ, MDMBUS_CLOCK_SPEED=repr(self.speed),
                    MDMBUS_CLOCK_ORIGIN=repr(self.origin), MDMBUS_SWEEP_INTERVAL="0.2",
                    MDMBUS_BATCH_WAIT="0.05", PYTHONUNBUFFERED="1")

    def start(self, *names: str) -> None:
        for name in names or ("pipeline", "cm-connector", "sweeper"):
            log = open(self.log_dir / f"{name}.log", "ab")
            env = self.env()
            if name in self.metrics_ports:
                env["MDMBUS_METRICS_PORT"] = str(self.metrics_ports[name])
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "mdmbus", "process", name], env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(60)

    def stop(self) -> None:
        for name in list(self.procs):
            end_process(self.procs.pop(name))

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited: {self.tail(name)}"

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class Workload:
    """Produces records like the CM side and devices do, and reads what the stores hold."""

    def __init__(self, settings: Settings, clock: Clock, seed: int = 0) -> None:
        self.settings = settings
        self.clock = clock
        self.factory = RecordFactory(seed)
        self.contract = default_registry()
        self.producer: AIOKafkaProducer | None = None
        self.pools: dict[str, asyncpg.Pool] = {}

    async def __aenter__(self) -> "Workload":
        self.producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                         acks="all", enable_idempotence=True, linger_ms=2)
        await self.producer.start()
        for db in [region_database(r) for r in REGIONS] + [CM_DATABASE]:
            self.pools[db] = await asyncpg.create_pool(self.settings.pg_dsn(db), min_size=1, max_size=2)
            async with self.pools[db].acquire() as conn:
                await (ensure_cm_schema if db == CM_DATABASE else ensure_region_schema)(conn)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.producer.stop()
        for pool in self.pools.values():
            await pool.close()

    def make(self, kind: str, tenant: str, **kw: Any) -> dict[str, Any]:
        return self.factory.make(kind, tenant, self.clock.now_ms(), **kw)

    async def send(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        value = self.contract.codec.encode(kind, record)
        await self.send_raw(self.contract.spec(kind).topic, value, self.contract.key(kind, record))
        return record

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self.producer.send_and_wait(topic, value=value, key=key)

    async def produce(self, kind: str, tenant: str, **kw: Any) -> dict[str, Any]:
        return await self.send(kind, self.make(kind, tenant, **kw))

    async def onboard(self, region: str) -> str:
        tenant = self.factory.uuid()
        await self.produce("tenant_onboarded", tenant, country=COUNTRY_OF[region])
        return tenant

    def region_pool(self, region: str) -> asyncpg.Pool:
        return self.pools[region_database(region)]

    @property
    def cm(self) -> asyncpg.Pool:
        return self.pools[CM_DATABASE]

    async def tenant_region(self, tenant: str) -> str | None:
        for region in REGIONS:
            if await self.region_pool(region).fetchval(
                    "SELECT 1 FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant)):
                return region
        return None

    async def stored(self, region: str, record_ids: list[str], with_body: bool = True) -> set[str]:
        rows = await self.region_pool(region).fetch(
            "SELECT record_id FROM records WHERE record_id = ANY($1::uuid[])"
            + (" AND body IS NOT NULL" if with_body else ""), [uuid.UUID(r) for r in record_ids])
        return {str(r["record_id"]) for r in rows}

    async def anywhere(self, record_ids: list[str]) -> dict[str, set[str]]:
        """Which region stores hold data (a body) of these records."""
        return {region: await self.stored(region, record_ids) for region in REGIONS}

    async def dead_letters(self, start_offsets: dict[TopicPartition, int], want: set[str] | None = None,
                           timeout_s: float = 60.0) -> list[Any]:
        """Reads the dead-letter topic from ``start_offsets`` until ``want`` record ids (or
        keys) have all been seen, or the deadline."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                    enable_auto_commit=False)
        await consumer.start()
        out = []
        try:
            consumer.assign(list(start_offsets))
            for tp, off in start_offsets.items():
                consumer.seek(tp, off)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for msgs in batch.values():
                    out.extend(msgs)
                if want is not None and want <= self._ids_in(out):
                    break
                if want is None and not batch:
                    break
        finally:
            await consumer.stop()
        return out

    def _ids_in(self, messages: list[Any]) -> set[str]:
        ids = set()
        for m in messages:
            try:
                ids.add(str(self.contract.codec.decode(m.value).record["envelope"]["record_id"]))
            except Exception:
                ids.add(m.value.hex() if m.value else "")
        return ids

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or
                   range(topics.topic(topic).partitions)]
            return await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
