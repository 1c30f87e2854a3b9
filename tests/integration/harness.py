"""What the integration tests drive the system with: the real processes (through the one
launcher, mdmbus.cli.launcher), and a workload client that produces like the device side and
the account service do, calls the gateways like tenants do, and reads every store, topic and
log a rule must hold in.

The processes share one accelerated clock with the test and are stopped at the end of the
test or module that started them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata, TopicPartition

from mdmbus.cli.launcher import Launcher
from mdmbus.clock import Clock
from mdmbus.connections import kafka_options, pg_pool
from mdmbus.contract import default_registry
from mdmbus.identities import ADMIN
from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.services.connector.client import GatewayClient
from mdmbus.tls import client_ssl_context
from mdmbus.services.simulators.records import RecordFactory
from mdmbus.services.stores import dead_letters as letters_store
from mdmbus.services.stores.sealing import open_record
from mdmbus.settings import Settings
from mdmbus.stack import issuer
from mdmbus.stack.pki import write_private
from mdmbus.topics import TopicKind, all_topics, parse_topic, topic_name
from tests.conftest import wait_for

__all__ = ["launcher", "Workload", "COUNTRY_OF", "ALL_PROCESSES"]

COUNTRY_OF = {"na": "US", "eu": "DE", "ap": "JP"}
#: (name, region) of every process, for tests that run the whole system.
ALL_PROCESSES = (("pipeline", "all"), ("sweeper", "all"), ("gateway", "all"),
                 ("cm-connector", None))


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` (a process is up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def launcher(settings: Settings, log_dir: Path, speed: float, origin: float | None = None,
             **env: str) -> Launcher:
    """A launcher for the test stack: a fast sweep and batch wait, the CM connector's token
    directory under ``log_dir``."""
    tokens = log_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = dict(os.environ, MDMBUS_SWEEP_INTERVAL="0.2", MDMBUS_BATCH_WAIT="0.05",
                MDMBUS_CM_TOKENS=str(tokens), **env)
    return Launcher(log_dir, Clock(speed, origin or time.time()), base)


class Workload:
    """Produces records like the device side and the account service, calls the gateways
    like tenants, and reads what every store holds."""

    def __init__(self, settings: Settings, clock: Clock, seed: int = 0,
                 tokens_dir: Path | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.factory = RecordFactory(seed)
        self.contract = default_registry()
        self.tokens_dir = tokens_dir
        self.producer: AIOKafkaProducer | None = None
        self.pools: dict[str, asyncpg.Pool] = {}
        #: tenant -> region, of the tenants this workload onboarded.
        self.region_of: dict[str, str] = {}
        self._clients: list[GatewayClient] = []
        self._ssl = client_ssl_context(settings.ca_path)

    async def __aenter__(self) -> "Workload":
        self.producer = AIOKafkaProducer(**kafka_options(self.settings, ADMIN),
                                         acks="all", enable_idempotence=True, linger_ms=2)
        await self.producer.start()
        for db in [*(region_database(r) for r in REGIONS), DIRECTORY_DATABASE, CM_DATABASE]:
            self.pools[db] = await pg_pool(self.settings, db, None, min_size=1,
                                                       max_size=3)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for client in self._clients:
            await client.close()
        await self.producer.stop()
        for pool in self.pools.values():
            await pool.close()

    # ---------------------------------------------------------------- producing

    def make(self, kind: str, tenant: str, **kw: Any) -> dict[str, Any]:
        return self.factory.make(kind, tenant, self.clock.now_ms(), **kw)

    def topic_of(self, kind: str, region: str | None) -> str:
        spec = self.contract.spec(kind)
        return topic_name(spec.topic, None if spec.topic == TopicKind.TENANT_LIFECYCLE else region)

    async def send(self, kind: str, record: dict[str, Any], region: str | None = None,
                   key: bytes | None = ...) -> RecordMetadata:
        """Sends to the kind's topic in ``region`` (default: the tenant's)."""
        region = region or self.region_of.get(str(record["envelope"]["tenant_id"]))
        value = self.contract.codec.encode(kind, record)
        return await self.send_raw(self.topic_of(kind, region), value,
                                   self.contract.key(kind, record) if key is ... else key)

    async def send_raw(self, topic: str, value: bytes | None, key: bytes | None = None,
                       headers: list | None = None) -> RecordMetadata:
        return await self.producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def produce(self, kind: str, tenant: str, region: str | None = None,
                      **kw: Any) -> dict[str, Any]:
        record = self.make(kind, tenant, **kw)
        await self.send(kind, record, region)
        return record

    async def onboard(self, region: str, country: str | None = None) -> str:
        tenant = self.factory.uuid()
        self.region_of[tenant] = region
        await self.produce("tenant_onboarded", tenant, country=country or COUNTRY_OF[region])
        return tenant

    async def onboarded(self, region: str, timeout_s: float = 60) -> str:
        """A tenant onboarded and applied in ``region``'s store."""
        tenant = await self.onboard(region)
        await wait_for(lambda: self.tenant_region(tenant), timeout_s, f"tenant onboarded in {region}")
        return tenant

    # ---------------------------------------------------------------- tenants' door

    def token(self, tenant: str, role: str, ttl_s: float = 3600) -> str:
        return issuer(self.settings).issue(tenant, role, ttl_s)

    def client(self, tenant: str, role: str = "connector", region: str | None = None,
               token: str | None = None) -> GatewayClient:
        region = region or self.region_of[tenant]
        client = GatewayClient(self.settings.gateway_url(region),
                               token or self.token(tenant, role), self._ssl)
        self._clients.append(client)
        return client

    def connect_cm(self, tenant: str) -> Path:
        """Gives the tenant's CM connector its token file (the connector picks it up)."""
        path = self.tokens_dir / f"{tenant}.json"
        import json
        write_private(path, json.dumps({
            "tenant_id": tenant, "gateway": self.settings.gateway_url(self.region_of[tenant]),
            "token": self.token(tenant, "connector", 24 * 3600)}).encode())
        return path

    # ---------------------------------------------------------------- reading the stores

    def region_pool(self, region: str) -> asyncpg.Pool:
        return self.pools[region_database(region)]

    @property
    def directory(self) -> asyncpg.Pool:
        return self.pools[DIRECTORY_DATABASE]

    @property
    def cm(self) -> asyncpg.Pool:
        return self.pools[CM_DATABASE]

    async def tenant_region(self, tenant: str) -> str | None:
        """The region whose store holds the tenant's row (None: none does)."""
        for region in REGIONS:
            if await self.region_pool(region).fetchval(
                    "SELECT 1 FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant)):
                return region
        return None

    async def directory_state(self, tenant: str) -> str | None:
        return await self.directory.fetchval(
            "SELECT state FROM tenant_directory WHERE tenant_id = $1", uuid.UUID(tenant))

    async def stored(self, region: str, record_ids: Iterable[str], with_body: bool = True) -> set[str]:
        rows = await self.region_pool(region).fetch(
            "SELECT record_id FROM records WHERE record_id = ANY($1::uuid[])"
            + (" AND body IS NOT NULL" if with_body else ""), [uuid.UUID(r) for r in record_ids])
        return {str(r["record_id"]) for r in rows}

    async def anywhere(self, record_ids: Iterable[str]) -> dict[str, set[str]]:
        """Which region stores hold data (a body) of these records."""
        ids = list(record_ids)
        return {region: await self.stored(region, ids) for region in REGIONS}

    async def bodies(self, region: str, record_ids: Iterable[str]) -> dict[str, bytes | None]:
        """record id -> its body as stored, opened with the region's keyring (a body is
        sealed in the store: docs/design.md section 9)."""
        rows = await self.region_pool(region).fetch(
            "SELECT tenant_id, record_id, body, wrapped_key, kek_id FROM records"
            " WHERE record_id = ANY($1::uuid[])", [uuid.UUID(r) for r in record_ids])
        return {str(r["record_id"]): open_record(r) for r in rows}

    async def dead_letter(self, region: str, meta: RecordMetadata) -> dict | None:
        """The dead-letter row of the message sent as ``meta`` (its source location), its
        body opened."""
        return await letters_store.fetch(self.region_pool(region),
                                         (meta.topic, meta.partition, meta.offset))

    async def audited(self, region: str, rule: str, record_ids: Iterable[str]) -> list[str]:
        """Every audit entry of these ids under ``rule``, one per entry (duplicates show)."""
        ids = [uuid.UUID(i) for i in record_ids]
        rows = await self.region_pool(region).fetch(
            "SELECT record_ids FROM deletion_audit WHERE rule = $1 AND record_ids && $2::uuid[]",
            rule, ids)
        wanted = set(ids)
        return [str(i) for r in rows for i in r["record_ids"] if i in wanted]

    # ---------------------------------------------------------------- reading the topics

    async def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(**kafka_options(self.settings, ADMIN))
        await consumer.start()
        try:
            return await consumer.end_offsets(_partitions(topic))
        finally:
            await consumer.stop()

    async def read_all(self, topics: Iterable[str] | None = None,
                       timeout_s: float = 60) -> list[Any]:
        """Every message still readable (from each partition's log start to its end) in the
        given topics, or in every mdmbus topic. Raises :class:`IncompleteRead` if some
        partition could not be read to its end within ``timeout_s``: a "nothing readable"
        check on a partial read would pass without having looked."""
        names = list(topics) if topics is not None else [n for n, _ in all_topics()]
        consumer = AIOKafkaConsumer(**kafka_options(self.settings, ADMIN),
                                    enable_auto_commit=False)
        await consumer.start()
        out: list[Any] = []
        try:
            tps = [tp for t in names for tp in _partitions(t)]
            consumer.assign(tps)
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, starts[tp])
            todo = {tp for tp in tps if ends[tp] > starts[tp]}
            deadline = time.monotonic() + timeout_s
            while todo and time.monotonic() < deadline:
                for tp, msgs in (await consumer.getmany(*todo, timeout_ms=500)).items():
                    out += msgs
                    if msgs and msgs[-1].offset + 1 >= ends[tp]:
                        todo.discard(tp)
                for tp in list(todo):  # truncated meanwhile: nothing more to read there
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
            if todo:
                where = {f"{tp.topic}[{tp.partition}]": f"{await consumer.position(tp)}/{ends[tp]}"
                         for tp in sorted(todo)}
                raise IncompleteRead(f"not read to the end in {timeout_s:.0f} s "
                                     f"(position/end): {where}")
        finally:
            await consumer.stop()
        return out



class IncompleteRead(AssertionError):
    """A reader could not read every partition to its end: what it returns would be partial."""


def _partitions(topic: str) -> list[TopicPartition]:
    """The partitions of an mdmbus topic, as the catalogue declares them (a consumer that has
    not subscribed knows no topic's partitions)."""
    return [TopicPartition(topic, p) for p in range(parse_topic(topic)[0].partitions)]


async def rewind(settings: Settings, group: str, offsets: dict[TopicPartition, int] | None = None,
                 topics: Iterable[str] = (), timeout_s: float = 60) -> None:
    """Sets ``group``'s committed offsets (``offsets``, or the log start of every partition of
    ``topics``). The group's processes must be stopped; a killed member stays in the group
    until its session times out, so this retries until the broker takes the commit."""
    from aiokafka.errors import CommitFailedError, KafkaError
    deadline = time.monotonic() + timeout_s
    while True:
        consumer = AIOKafkaConsumer(**kafka_options(settings, ADMIN), group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tps = list(offsets) if offsets is not None else \
                [tp for t in topics for tp in _partitions(t)]
            consumer.assign(tps)
            target = offsets if offsets is not None else await consumer.beginning_offsets(tps)
            await consumer.commit(dict(target))
            return
        except (CommitFailedError, KafkaError):
            if time.monotonic() > deadline:
                raise
        finally:
            await consumer.stop()
        await asyncio.sleep(0.5)
