"""The gateway's door (services/gateway/guards.py), against a real gateway process over real
TLS: what happens to a connection before any token is read.

The gateway here runs with small connection caps (MAX_CONNECTIONS in all, SOURCE_CAP per
source address) so that they are reached within the test, and the default rate of new
connections per source address. Loopback has a whole /8 of addresses: each client role below
connects from one of its own, as separate clients would.

- A client that leaves every connection idle after one request (a fresh TLS context per
  request gives aiohttp a fresh pool each time) must be served on each new one; the gateway
  used to reset the connection once idle ones filled the cap.
- One source address over its rate of new connections, or over its cap of open ones, is
  refused at once, before TLS, while another address's requests keep succeeding.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid

import aiohttp
import pytest

from mdmbus.contract import to_json
from mdmbus.regions import REGIONS
from mdmbus.tls import client_ssl_context
from mdmbus.settings import Settings
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, listening

pytestmark = pytest.mark.integration

REGION = "eu"
MAX_CONNECTIONS = 20
SOURCE_CAP = 10
#: The defaults of MDMBUS_GATEWAY_SOURCE_RATE and _BURST, read from the settings' declaration.
RATE, BURST = Settings().gateway_source_rate, Settings().gateway_source_burst
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
async def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("door"), speed=1.0)
    try:
        procs.start("pipeline", "all")
        procs.start("gateway", "all", env={
            "MDMBUS_GATEWAY_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "MDMBUS_GATEWAY_SOURCE_MAX_CONNECTIONS": str(SOURCE_CAP)})

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
    open and idle in the client's pools, from three addresses in turn (so that the overall
    cap is reached before any address's own): every one is answered and accepted."""
    tenant = await work.onboarded(REGION)
    url = work.settings.gateway_url(REGION) + "/v1/records"
    headers = {"Authorization": f"Bearer {work.token(tenant, 'connector')}",
               "Content-Type": NDJSON}
    answers, connections = [], []
    trace = aiohttp.TraceConfig()

    async def created(session, context, params) -> None:
        connections.append(1)
    trace.on_connection_create_end.append(created)
    sessions = [aiohttp.ClientSession(headers=headers, trace_configs=[trace],
                                      connector=aiohttp.TCPConnector(local_addr=(source, 0)))
                for source in ("127.0.0.1", "127.0.0.5", "127.0.0.6")]
    try:
        for i in range(3 * MAX_CONNECTIONS):
            # A context of its own each time, as a careless client makes: aiohttp pools
            # connections per context, so each request opens a new connection and leaves the
            # last one idle (mdmbus.tls caches its contexts, so it cannot stand in here).
            fresh = ssl.create_default_context(cafile=str(work.settings.ca_path))
            async with sessions[i % 3].post(url, data=_upload_line(work, tenant),
                                            ssl=fresh) as resp:
                answers.append((resp.status, len((await resp.json())["accepted"])))
    finally:
        for http in sessions:
            await http.close()
    # Each request had a connection of its own (the premise of the test).
    assert len(connections) == 3 * MAX_CONNECTIONS
    assert answers == [(200, 1)] * (3 * MAX_CONNECTIONS)


async def _handshake(ctx: ssl.SSLContext, port: int, source: str):
    """A TLS connection from ``source``, or None when the gateway refused it."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, local_addr=(source, 0)), 10)
        return writer
    except (OSError, asyncio.TimeoutError):  # reset, or closed during the handshake
        return None


async def _status_on_a_new_connection(work: Workload, tenant: str) -> int | str:
    """A status call from 127.0.0.1 on a connection of its own: the status, or the error."""
    url = work.settings.gateway_url(REGION) + "/v1/status"
    headers = {"Authorization": f"Bearer {work.token(tenant, 'auditor')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        try:
            async with http.get(url, ssl=client_ssl_context(work.settings.ca_path)) as resp:
                return resp.status
        except aiohttp.ClientError as exc:
            return type(exc).__name__


class _Victim:
    """Status calls on a new connection each, from 127.0.0.1, until stopped (one at least)."""

    def __init__(self, work: Workload, tenant: str) -> None:
        self.work, self.tenant = work, tenant
        self.statuses: list[int | str] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or not self.statuses:
            self.statuses.append(await _status_on_a_new_connection(self.work, self.tenant))
            await asyncio.sleep(0.05)  # a victim's pace, not a flood of its own


async def test_a_source_over_its_connection_rate_is_refused_while_another_is_served(work,
                                                                                     stack):
    """127.0.0.2 opens TLS connections as fast as it can, closing each once its handshake is
    done (so that its cap of open ones is not what stops it): no more handshakes succeed than
    the burst plus the rate over the time taken, the rest are refused; 127.0.0.1's status
    calls, each on a new connection, all succeed meanwhile."""
    tenant = await work.onboarded(REGION)
    ctx = client_ssl_context(stack.ca_path)
    port = stack.gateway_ports[REGION]
    victim, stop = _Victim(work, tenant), asyncio.Event()
    calls = asyncio.create_task(victim.run(stop))
    attempts = 3 * BURST
    started = time.monotonic()
    accepted = 0
    for _ in range(attempts):
        writer = await _handshake(ctx, port, "127.0.0.2")
        if writer is not None:
            accepted += 1
            writer.close()
            await writer.wait_closed()
    elapsed = time.monotonic() - started
    stop.set()
    await calls
    assert 0 < accepted <= BURST + RATE * elapsed + 1, (accepted, elapsed)
    assert attempts - accepted > 0
    assert victim.statuses and set(victim.statuses) == {200}, victim.statuses


async def test_a_source_over_its_cap_of_open_connections_is_refused_while_another_is_served(
        work, stack):
    """127.0.0.3 holds SOURCE_CAP connections open, silent after TLS: its next one is
    refused at once (well before the header timeout that would cut the silent ones), while
    127.0.0.1's status calls on new connections succeed."""
    tenant = await work.onboarded(REGION)
    ctx = client_ssl_context(stack.ca_path)
    port = stack.gateway_ports[REGION]
    held = [await _handshake(ctx, port, "127.0.0.3") for _ in range(SOURCE_CAP)]
    try:
        assert all(w is not None for w in held)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=("127.0.0.3", 0))
        try:  # plain TCP: the refusal comes before TLS, so no ClientHello is needed to see it
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass
        finally:
            writer.close()
        assert time.monotonic() - started < 5
        assert [await _status_on_a_new_connection(work, tenant) for _ in range(5)] == [200] * 5
    finally:
        for w in held:
            if w is not None:
                w.close()


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
