"""The demo's simulated world: a CM side uploading for tenants in several regions, devices with
sessions, commands, relayed data and inventory cache, tenants whose subscriptions end or who
ask for deletion, and a trickle of bad input -- all on the shared accelerated clock."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from mdmbus import topics
from mdmbus.clock import Clock
from mdmbus.contract import Registry, default_registry
from mdmbus.regions import country_regions
from mdmbus.services.simulators.records import RELAY_KINDS, UPLOAD_KINDS, RecordFactory

__all__ = ["SimulatedWorld"]

HOUR_MS = 3_600_000


@dataclass
class _Tenant:
    tenant_id: str
    devices: list[str] = field(default_factory=list)


@dataclass
class SimulatedWorld:
    producer: AIOKafkaProducer
    clock: Clock
    rate: float = 200.0  # records per real second
    tenants: int = 24
    #: None: a fresh world each run (tenant ids from an earlier run would still be in its
    #: stores, perhaps in retention); an int replays the same world.
    seed: int | None = None
    contract: Registry = field(default_factory=default_registry)
    sent: int = 0

    def __post_init__(self) -> None:
        seed = self.seed if self.seed is not None else random.SystemRandom().getrandbits(64)
        self.random = random.Random(seed)
        self.factory = RecordFactory(seed, self.contract)
        self._tenants: list[_Tenant] = []

    async def _send(self, kind: str, record: dict[str, Any]) -> None:
        await self.producer.send(self.contract.spec(kind).topic,
                                 value=self.contract.codec.encode(kind, record),
                                 key=self.contract.key(kind, record))
        self.sent += 1

    async def _make_and_send(self, kind: str, tenant: str, **kw: Any) -> dict[str, Any]:
        record = self.factory.make(kind, tenant, self.clock.now_ms(), **kw)
        await self._send(kind, record)
        return record

    async def onboard(self) -> _Tenant:
        countries = sorted(country_regions())
        tenant = _Tenant(self.factory.uuid(), [self.factory.uuid() for _ in range(4)])
        await self._make_and_send("tenant_onboarded", tenant.tenant_id,
                                  country=self.random.choice(countries))
        self._tenants.append(tenant)
        return tenant

    async def _device_round(self, tenant: _Tenant) -> None:
        """A device connects, gets commands, relays data, and its session later expires."""
        device = self.random.choice(tenant.devices)
        session = self.factory.uuid()
        expires = self.clock.now_ms() + 8 * HOUR_MS
        await self._make_and_send("device_session", tenant.tenant_id, device_id=device,
                                  session_id=session, event_type="START", expires_at=expires)
        for _ in range(self.random.randrange(1, 4)):
            await self._make_and_send("device_command", tenant.tenant_id, device_id=device,
                                      session_id=session)
        await self._make_and_send(self.random.choice(RELAY_KINDS), tenant.tenant_id,
                                  device_id=device)
        await self._make_and_send("inventory_cache", tenant.tenant_id, device_id=device)

    async def _lifecycle_event(self, turn: int) -> None:
        """In turn: a device leaves, a subscription ends, a device leaves, a tenant cancels and
        asks for deletion. A tenant that leaves is replaced by a new one."""
        if len(self._tenants) < 4:
            return
        tenant = self.random.choice(self._tenants)
        if turn % 2 == 0:
            await self._make_and_send("device_unenrolled", tenant.tenant_id,
                                      device_id=self.random.choice(tenant.devices))
            return
        self._tenants.remove(tenant)
        if turn % 4 == 1:
            await self._make_and_send("tenant_subscription_ended", tenant.tenant_id)
        else:
            await self._make_and_send("tenant_subscription_cancelled", tenant.tenant_id,
                                      deletion_requested=True)
        await self.onboard()

    async def _bad_input(self) -> None:
        """Garbage, and a record carrying a private key: both must end as dead letters."""
        if self.random.random() < 0.5:
            await self.producer.send(topics.UPLOAD, value=self.random.randbytes(40), key=None)
            self.sent += 1
        elif self._tenants:
            tenant = self.random.choice(self._tenants)
            key = (b"-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEA"
                   b"\n-----END PRIVATE KEY-----\n")
            record = self.factory.make("U3", tenant.tenant_id, self.clock.now_ms(),
                                       subject_name_format=key.decode())
            await self.producer.send(topics.UPLOAD, value=self.contract.codec.encode("U3", record),
                                     key=self.contract.key("U3", record))
            self.sent += 1

    async def run(self, stop: asyncio.Event) -> None:
        for _ in range(self.tenants):
            await self.onboard()
        await self.producer.flush()
        tick = 0
        while not stop.is_set():
            started = asyncio.get_running_loop().time()
            batch = max(1, int(self.rate / 10))
            for _ in range(batch):
                tenant = self.random.choice(self._tenants)
                if self.random.random() < 0.7:
                    await self._make_and_send(self.random.choice(UPLOAD_KINDS), tenant.tenant_id,
                                              device_id=self.random.choice(tenant.devices))
                else:
                    await self._device_round(tenant)
            tick += 1
            if tick % 10 == 0:
                await self._lifecycle_event(tick // 10)
            if tick % 15 == 0:
                await self._bad_input()
            await self.producer.flush()
            spent = asyncio.get_running_loop().time() - started
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, 0.1 - spent))
            except asyncio.TimeoutError:
                pass
