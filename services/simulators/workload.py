"""The demo's simulated world, on the shared accelerated clock:

- an account service onboards tenants in every region (the global lifecycle topic), ends
  subscriptions and takes deletion requests, and gives each tenant's CM connector its token;
- each tenant's CM side uploads its data through its region's gateway with its token;
- devices, through the cloud's device side, open sessions, get commands, relay data and cache
  inventory on their region's topics, and sometimes un-enrol;
- a trickle of bad input (garbage, private key material, a record sent to the wrong region),
  which must end as dead letters and never in a store.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiokafka import AIOKafkaProducer

from mdmbus.clock import Clock
from mdmbus.connections import producer_options
from mdmbus.contract import Registry, default_registry, to_json
from mdmbus.identities import principal_of
from mdmbus.regions import REGIONS, country_regions, region_of_country
from mdmbus.services.connector.client import GatewayClient, GatewayError
from mdmbus.tls import client_ssl_context
from mdmbus.services.simulators.records import RELAY_KINDS, UPLOAD_KINDS, RecordFactory
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name

__all__ = ["SimulatedWorld", "TokenSource"]

HOUR_MS = 3_600_000

#: Issues a token for (tenant, role): the embedded stack's issuer, or your identity provider.
TokenSource = Callable[[str, str], str]


@dataclass
class _Tenant:
    tenant_id: str
    region: str
    devices: list[str] = field(default_factory=list)
    client: GatewayClient | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimulatedWorld:
    settings: Settings
    clock: Clock
    token: TokenSource
    rate: float = 200.0  # records per real second
    tenants: int = 24
    #: Where each tenant's CM connector finds its token file (None: no connectors).
    connector_tokens: Path | None = None
    #: None: a fresh world each run; an int replays the same world.
    seed: int | None = None
    contract: Registry = field(default_factory=default_registry)
    sent: int = 0
    uploaded: int = 0
    refused_at_door: int = 0

    def __post_init__(self) -> None:
        seed = self.seed if self.seed is not None else random.SystemRandom().getrandbits(64)
        self.random = random.Random(seed)
        self.factory = RecordFactory(seed, self.contract)
        self._tenants: list[_Tenant] = []
        self._bad_turns = 0
        self._producers: dict[str | None, AIOKafkaProducer] = {}
        self._ssl = client_ssl_context(self.settings.ca_path)

    async def start(self) -> "SimulatedWorld":
        # The device side of each region as that region's devices principal; the account
        # service as accounts (mdmbus/identities.py): each may write only its own topics.
        for region in (None, *REGIONS):
            principal = "accounts" if region is None else principal_of("devices", region)
            producer = AIOKafkaProducer(**producer_options(
                self.settings, principal, region, linger_ms=5))
            await producer.start()
            self._producers[region] = producer
        return self

    async def close(self) -> None:
        for tenant in self._tenants:
            if tenant.client is not None:
                await tenant.client.close()
        for producer in self._producers.values():
            await producer.stop()

    def _producer(self, region: str | None) -> AIOKafkaProducer:
        return self._producers[region]

    async def send(self, kind: str, record: dict[str, Any], region: str | None) -> None:
        """Onto the kind's topic in ``region`` (global topics: None), as the device side and
        the account service produce."""
        spec = self.contract.spec(kind)
        if spec.topic == TopicKind.TENANT_LIFECYCLE:
            region = None
        await self._producer(region).send(topic_name(spec.topic, region),
                                          value=self.contract.codec.encode(kind, record),
                                          key=self.contract.key(kind, record))
        self.sent += 1

    async def _make_and_send(self, kind: str, tenant: _Tenant, **kw: Any) -> dict[str, Any]:
        record = self.factory.make(kind, tenant.tenant_id, self.clock.now_ms(), **kw)
        await self.send(kind, record, tenant.region)
        return record

    async def onboard(self) -> _Tenant:
        country = self.random.choice(sorted(country_regions()))
        tenant = _Tenant(self.factory.uuid(), region_of_country(country),
                         [self.factory.uuid() for _ in range(4)])
        await self._make_and_send("tenant_onboarded", tenant, country=country)
        tenant.client = GatewayClient(self.settings.gateway_url(tenant.region),
                                      self.token(tenant.tenant_id, "connector"), self._ssl)
        if self.connector_tokens is not None:
            self._write_token(self.connector_tokens, tenant)
        self._tenants.append(tenant)
        return tenant

    def _write_token(self, folder: Path, tenant: _Tenant) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{tenant.tenant_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tenant_id": tenant.tenant_id,
                                   "gateway": self.settings.gateway_url(tenant.region),
                                   "token": self.token(tenant.tenant_id, "connector")}))
        tmp.chmod(0o600)
        tmp.rename(path)

    def _upload(self, tenant: _Tenant) -> None:
        kind = self.random.choice(UPLOAD_KINDS)
        record = self.factory.make(kind, tenant.tenant_id, self.clock.now_ms(),
                                   device_id=self.random.choice(tenant.devices))
        tenant.pending.append({"kind": kind,
                               "record": to_json(self.contract.spec(kind).expanded, record)})

    async def _flush_uploads(self) -> None:
        """Each tenant's CM side sends what it gathered this tick through its gateway."""
        async def flush(tenant: _Tenant) -> None:
            lines, tenant.pending = tenant.pending, []
            assert tenant.client is not None  # onboard() sets it before listing the tenant
            try:
                answer = await tenant.client.upload(lines)
            except GatewayError as exc:  # e.g. in retention: refused at the door
                self.refused_at_door += len(lines)
                if exc.status >= 500:
                    raise
                return
            self.uploaded += len(answer["accepted"])
            self.refused_at_door += len(answer["refused"])
        await asyncio.gather(*(flush(t) for t in self._tenants if t.pending))

    async def _device_round(self, tenant: _Tenant) -> None:
        """A device connects, gets commands, relays data, and its session later expires."""
        device = self.random.choice(tenant.devices)
        session = self.factory.uuid()
        expires = self.clock.now_ms() + 8 * HOUR_MS
        await self._make_and_send("device_session", tenant, device_id=device,
                                  session_id=session, event_type="START", expires_at=expires)
        for _ in range(self.random.randrange(1, 4)):
            await self._make_and_send("device_command", tenant, device_id=device,
                                      session_id=session)
        await self._make_and_send(self.random.choice(RELAY_KINDS), tenant, device_id=device)
        await self._make_and_send("inventory_cache", tenant, device_id=device)

    async def _lifecycle_event(self, turn: int) -> None:
        """In turn: a device leaves, a subscription ends, a device leaves, a tenant cancels and
        asks for deletion. A tenant that leaves is replaced by a new one."""
        if len(self._tenants) < 4:
            return
        tenant = self.random.choice(self._tenants)
        if turn % 2 == 0:
            await self._make_and_send("device_unenrolled", tenant,
                                      device_id=self.random.choice(tenant.devices))
            return
        self._tenants.remove(tenant)
        if turn % 4 == 1:
            await self._make_and_send("tenant_subscription_ended", tenant)
        else:
            await self._make_and_send("tenant_subscription_cancelled", tenant,
                                      deletion_requested=True)
        if tenant.client is not None:
            await tenant.client.close()
        if self.connector_tokens is not None:
            (self.connector_tokens / f"{tenant.tenant_id}.json").unlink(missing_ok=True)
        await self.onboard()

    async def _bad_input(self) -> None:
        """Garbage, a relay record carrying a private key, a record in the wrong region, in
        turn (each kind every third time, so a short run shows all three): each must end as a
        dead letter, none in a store."""
        tenant = self.random.choice(self._tenants)
        turn, self._bad_turns = self._bad_turns % 3, self._bad_turns + 1
        if turn == 0:
            await self._producer(tenant.region).send(
                topic_name(TopicKind.RELAY, tenant.region), value=self.random.randbytes(40),
                key=tenant.tenant_id.encode())
            self.sent += 1
        elif turn == 1:
            key = ("-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEA"
                   "\n-----END PRIVATE KEY-----\n")
            record = self.factory.make("R3", tenant.tenant_id, self.clock.now_ms(),
                                       device_id=self.random.choice(tenant.devices),
                                       message=key)
            await self.send("R3", record, tenant.region)
        else:
            other = self.random.choice([r for r in REGIONS if r != tenant.region])
            record = self.factory.make("inventory_cache", tenant.tenant_id, self.clock.now_ms(),
                                       device_id=self.random.choice(tenant.devices))
            await self.send("inventory_cache", record, other)

    async def run(self, stop: asyncio.Event) -> None:
        for _ in range(self.tenants):
            await self.onboard()
        await self._producer(None).flush()
        tick = 0
        while not stop.is_set():
            started = asyncio.get_running_loop().time()
            for _ in range(max(1, int(self.rate / 10))):
                tenant = self.random.choice(self._tenants)
                if self.random.random() < 0.7:
                    self._upload(tenant)
                else:
                    await self._device_round(tenant)
            await self._flush_uploads()
            tick += 1
            if tick % 10 == 0:
                await self._lifecycle_event(tick // 10)
            if tick % 15 == 0:
                await self._bad_input()
            for producer in self._producers.values():
                await producer.flush()
            spent = asyncio.get_running_loop().time() - started
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, 0.1 - spent))
            except asyncio.TimeoutError:
                pass
