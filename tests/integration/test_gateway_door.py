"""The gateway's door (services/gateway/guards.py), against a real gateway process over real
TLS: what happens to a connection before any token is read.

The gateway here runs with a small connection cap (MAX_CONNECTIONS) so that the cap is reached
within the test: a client that leaves every connection idle after one request (a fresh TLS
context per request gives aiohttp a fresh pool each time, as tests/integration/
test_keys_stored_nowhere.py did) must be served on each new one, where the gateway used to
reset the connection once idle ones filled the cap.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid

import aiohttp
import pytest

from mdmbus.contract import to_json
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import client_ssl_context
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, listening

pytestmark = pytest.mark.integration

REGION = "eu"
MAX_CONNECTIONS = 20
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
async def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("door"), speed=1.0)
    try:
        procs.start("pipeline", "all")
        procs.start("gateway", "all", env={"MDMBUS_GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS)})

        def up() -> bool:
            procs.assert_alive()
            return all(listening(stack.gateway_ports[r]) for r in REGIONS)
        await wait_for(up, 90, "the gateways", interval_s=0.2)
        yield procs
    finally:
        procs.stop()


@pytest.fixture
async def work(stack, system):
    async with Workload(stack, system.clock, seed=uuid.uuid4().int) as w:
        yield w
    system.assert_alive()


def _upload_line(work: Workload, tenant: str) -> bytes:
    record = work.make("U12", tenant)
    return json.dumps({"kind": "U12", "record": to_json(
        work.contract.spec("U12").expanded, record)}).encode()


async def test_a_client_leaving_idle_connections_behind_is_served_past_the_cap(work):
    """Three times the cap of uploads, each on a new connection while the previous ones stay
    open and idle in the client's pools: every one is answered and accepted."""
    tenant = await work.onboarded(REGION)
    url = work.settings.gateway_url(REGION) + "/v1/records"
    headers = {"Authorization": f"Bearer {work.token(tenant, 'connector')}",
               "Content-Type": NDJSON}
    answers, connections = [], []
    trace = aiohttp.TraceConfig()

    async def created(session, context, params) -> None:
        connections.append(1)
    trace.on_connection_create_end.append(created)
    async with aiohttp.ClientSession(headers=headers, trace_configs=[trace]) as http:
        for _ in range(3 * MAX_CONNECTIONS):
            async with http.post(url, data=_upload_line(work, tenant),
                                 ssl=client_ssl_context(work.settings.ca_path)) as resp:
                answers.append((resp.status, len((await resp.json())["accepted"])))
    # Each request had a connection of its own (the premise of the test).
    assert len(connections) == 3 * MAX_CONNECTIONS
    assert answers == [(200, 1)] * (3 * MAX_CONNECTIONS)


async def test_a_refusal_before_the_body_is_read_keeps_the_connection_usable(work, stack):
    """A 4 MiB upload with a token that is refused (401, answered before the body is read):
    the client can send the whole body and then make its next request on the same
    connection, not meet a reset."""
    tenant = await work.onboarded(REGION)
    ctx: ssl.SSLContext = client_ssl_context(stack.ca_path)
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway_ports[REGION],
                                                   ssl=ctx)
    try:
        body = b"x" * (4 * 1024 * 1024)
        writer.write(b"POST /v1/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
                     b"Content-Type: " + NDJSON.encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for i in range(0, len(body), 64 * 1024):
            writer.write(body[i:i + 64 * 1024])
            await writer.drain()
        assert await _status(reader) == 401
        token = work.token(tenant, "connector")
        writer.write(f"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                     "\r\n\r\n".encode())
        await writer.drain()
        assert await _status(reader) == 200
    finally:
        writer.close()


async def _status(reader: asyncio.StreamReader) -> int:
    """The status of the next answer on the connection, its body read past."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await asyncio.wait_for(reader.readexactly(length), 30)
    return int(head.split(b" ")[1])
