"""Rule 2's acknowledgement (POST /v1/relay/ack, services/rules/delete_after_download.py)
deletes the caller's relay records pending for CM and nothing else: never an upload, a
command, an inventory cache entry, nor another tenant's relay record, whatever ids the caller
names. The real pipeline stores the records, the real gateway answers; what is left is read
from the store and the deletion audit by the superuser.
"""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from mdmbus.regions import REGIONS
from mdmbus.tls import client_ssl_context
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher

pytestmark = pytest.mark.integration

STORED_S = 90.0


@pytest.fixture(scope="module")
async def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("acknowledgement"), speed=1.0)
    try:
        procs.start("pipeline", "all")
        procs.start("gateway", "all")
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as w:
            probe = await w.onboard("eu")

            async def ready() -> bool:
                procs.assert_alive()
                return await w.tenant_region(probe) == "eu"
            await wait_for(ready, 120, "the pipeline applying an onboarding", interval_s=0.2)
        yield procs
    finally:
        procs.stop()


async def _rows(work: Workload, region: str, ids: list[str]) -> dict[str, tuple]:
    """record id -> everything a row holds but its storage times."""
    rows = await work.region_pool(region).fetch(
        "SELECT record_id, tenant_id, category, device_id, session_id, deadline, deadline_rule,"
        " body FROM records WHERE record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    return {str(r["record_id"]): tuple(r) for r in rows}


async def _ack(stack, region: str, token: str, ids: list[str]) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=client_ssl_context(stack.ca_path))) as session:
        async with session.post(f"{stack.gateway_url(region)}/v1/relay/ack",
                                headers={"Authorization": f"Bearer {token}"},
                                json={"record_ids": ids}) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def test_an_acknowledgement_deletes_only_the_callers_pending_relay_records(stack, system):
    region = "eu"
    async with Workload(stack, system.clock, seed=uuid.uuid4().int) as work:
        a, b = await work.onboarded(region), await work.onboarded(region)
        device, session = work.factory.uuid(), work.factory.uuid()
        await work.produce("device_session", a, device_id=device, session_id=session,
                           event_type="START", expires_at=work.clock.now_ms() + 3_600_000)

        async def session_open() -> bool:
            return bool(await work.region_pool(region).fetchval(
                "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device)))
        await wait_for(session_open, STORED_S, "A's device session opened")
        a_uploads = [(await work.produce(k, a))["envelope"]["record_id"]
                     for k in ("U1", "U9", "U12")]
        a_commands = [(await work.produce("device_command", a, device_id=device,
                                          session_id=session))["envelope"]["record_id"]
                      for _ in range(2)]
        a_inventory = [(await work.produce("inventory_cache", a, device_id=device))
                       ["envelope"]["record_id"] for _ in range(2)]
        b_relay = [(await work.produce(k, b, device_id=work.factory.uuid()))
                   ["envelope"]["record_id"] for k in ("R1", "R2", "R4")]
        # The control: one relay record of A, which the same acknowledgement must delete.
        a_relay = [(await work.produce("R1", a, device_id=device))["envelope"]["record_id"]]
        forbidden = a_uploads + a_commands + a_inventory + b_relay
        everything = forbidden + a_relay

        async def stored() -> bool:
            return await work.stored(region, everything) == set(everything)
        await wait_for(stored, STORED_S, "every record stored")
        before = await _rows(work, region, forbidden)
        assert {row[2] for row in before.values()} == {"upload", "command", "inventory_cache",
                                                       "relay"}

        token = work.token(a, "connector")
        # First only the ids that are not A's pending relay records: nothing at all happens.
        answer = await _ack(stack, region, token, forbidden)
        assert answer["deleted"] == [] and answer["already_deleted"] == [], answer
        assert sorted(r["record_id"] for r in answer["refused"]) == sorted(forbidden)
        assert await _rows(work, region, forbidden) == before
        assert await work.audited(region, "delete_after_download", everything) == []
        assert not await work.region_pool(region).fetchval(
            "SELECT count(*) FROM deletion_audit WHERE record_ids && $1::uuid[]",
            [uuid.UUID(i) for i in forbidden])

        # Then the same ids with A's relay record: that one goes, with its audit row, and
        # every other row is as it was.
        answer = await _ack(stack, region, token, forbidden + a_relay)
        assert answer["deleted"] == a_relay, answer
        assert sorted(r["record_id"] for r in answer["refused"]) == sorted(forbidden)
        assert await work.stored(region, a_relay) == set()
        assert await _rows(work, region, forbidden) == before
        assert await work.audited(region, "delete_after_download", everything) == a_relay
        # And nothing of these ids anywhere else was touched (other regions hold none).
        for other in REGIONS:
            if other != region:
                assert await work.stored(other, everything) == set()
