"""Isolation at the door (docs/design.md rule 8): no tenant, whatever it sends or leaves unread,
degrades another tenant's service beyond a stated bound; and the edges of what a request may
hold (JSON nesting, a token's lifetime).

A real gateway process serves every region with short limits, so that what it cuts is cut
within the test: a write to a client may take WRITE_TIMEOUT_S, a new connection has
HEADER_TIMEOUT_S to send its headers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import subprocess
import ssl
import time
import uuid

import aiohttp
import pytest

from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayError
from mdmbus.tls import client_ssl_context
from mdmbus.stack import issuer
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, listening

pytestmark = pytest.mark.integration

WRITE_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 2.0
#: The bound this module holds a victim's answers to while another tenant attacks.
VICTIM_BOUND_S = 2.0
#: Rows of the attacking tenant: its export is megabytes, more than socket buffers hold.
ATTACKER_ROWS = 30_000



@pytest.fixture(scope="module")
async def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("isolation-door"), speed=1.0)
    try:
        procs.start("pipeline", "all")
        procs.start("gateway", "all", env={
            "MDMBUS_GATEWAY_WRITE_TIMEOUT": str(WRITE_TIMEOUT_S),
            "MDMBUS_GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S)})

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


async def _fill(work: Workload, region: str, tenant: str, n: int) -> None:
    """``n`` held upload rows of the tenant, written straight into the store (as its owner):
    what a large tenant holds, without waiting for the pipeline to store it."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for _ in range(n):
        record = work.make("U12", tenant)
        record["build_version"] = "5.0." + "7" * 40
        rows.append((uuid.UUID(record["envelope"]["record_id"]), uuid.UUID(tenant), "U12",
                     "upload", now, now, work.contract.codec.encode("U12", record)))
    async with work.region_pool(region).acquire() as conn:
        await conn.copy_records_to_table(
            "records", records=rows, columns=("record_id", "tenant_id", "kind", "category",
                                              "event_time", "stored_at", "body"))


async def _unread_export(ctx: ssl.SSLContext, port: int, token: str, rcvbuf: int | None = 64 * 1024
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that asks for an export and never reads the answer. Its receive buffer is
    small (64 KiB; None: the system's default), so the export cannot all fit in the sockets'
    buffers and finish anyway."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                   server_hostname="127.0.0.1")
    writer.write(f"GET /v1/export HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                 f"\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_unread_exports_of_one_tenant_do_not_stall_its_region(work, stack):
    """One tenant opens six exports and reads none of them: the region's other tenants get
    their status, upload and relay answers within the bound all along; the tenant's own
    exports beyond its cap are answered 429 at once; the stalled ones are cut after the write
    timeout, after which the tenant can export again."""
    region = "eu"
    attacker, victim = await work.onboarded(region), await work.onboarded(region)
    await _fill(work, region, attacker, ATTACKER_ROWS)
    ctx = client_ssl_context(stack.ca_path)
    port = stack.gateway_ports[region]
    token = work.token(attacker, "auditor")
    attack = [await _unread_export(ctx, port, token) for _ in range(6)]
    try:
        client = work.client(victim, "connector")
        slowest = 0.0
        for _ in range(20):
            for call in (client.status, lambda: client.download(limit=10),
                         lambda: client.upload([])):
                started = time.monotonic()
                try:
                    await asyncio.wait_for(call(), VICTIM_BOUND_S)
                except asyncio.TimeoutError:
                    pytest.fail(f"the victim waited over {VICTIM_BOUND_S} s while another "
                                "tenant held unread exports")
                slowest = max(slowest, time.monotonic() - started)
        # Beyond the tenant's two export slots, the gateway refused at once.
        statuses = []
        for reader, _ in attack:
            try:
                head = await asyncio.wait_for(reader.readline(), 1)
            except asyncio.TimeoutError:
                head = b""
            statuses.append(head.split(b" ")[1:2])
        assert statuses.count([b"429"]) >= 4, statuses
    finally:
        for _, writer in attack:
            writer.close()

    async def can_export() -> bool:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            async with session.get(f"https://127.0.0.1:{port}/v1/export",
                                   headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status != 200:
                    return False
                return (await response.read()).count(b"\n") == ATTACKER_ROWS
    await wait_for(can_export, 30, "the attacker's slots back after its connections ended")


def _gateway_side(port: int, client_port: int) -> tuple[int, int] | None:
    """(bytes queued to send, send buffer size) of the gateway's end of a connection, as the
    kernel reports them (``ss``), or None when it has no such connection."""
    out = subprocess.run(["ss", "-tmnH", "state", "established",
                          f"( sport = :{port} and dport = :{client_port} )"],
                         capture_output=True, text=True, check=True).stdout
    head = re.search(r"^\s*\d+\s+(\d+)\s", out, re.M)
    memory = re.search(r"\btb(\d+)\b", out)
    return (int(head.group(1)), int(memory.group(1))) if head and memory else None


async def test_an_unread_export_holds_at_most_its_bounded_send_buffer(work, stack):
    """The kernel grows a connection's send buffer to megabytes on its own; an export nobody
    reads then ran through that much of its tenant's store before it had to wait. The
    gateway caps an export's send buffer at 256 KiB (the kernel reports twice what was set):
    checked in the kernel's own figures for the gateway's end of the connection."""
    region = "na"
    tenant = await work.onboarded(region)
    await _fill(work, region, tenant, ATTACKER_ROWS)
    port = stack.gateway_ports[region]
    reader, writer = await _unread_export(client_ssl_context(stack.ca_path), port,
                                          work.token(tenant, "auditor"), rcvbuf=None)
    client_port = writer.get_extra_info("sockname")[1]
    try:
        async def sending() -> tuple[int, int] | None:
            seen = _gateway_side(port, client_port)
            return seen if seen is not None and seen[0] > 0 else None
        queued, buffer = await wait_for(sending, 30, "the export's bytes queued at the gateway")
        assert buffer <= 2 * 256 * 1024, (queued, buffer)
    finally:
        writer.close()


async def test_an_export_nobody_reads_is_cut_after_the_write_timeout(work, stack):
    """An export whose client stops reading holds the gateway's buffers; it is cut (the
    connection ends) within the write timeout, with a margin for the socket buffers to fill."""
    region = "ap"
    tenant = await work.onboarded(region)
    await _fill(work, region, tenant, ATTACKER_ROWS)
    reader, writer = await _unread_export(client_ssl_context(stack.ca_path),
                                          stack.gateway_ports[region],
                                          work.token(tenant, "auditor"))
    try:
        # The behaviour under test: a client that reads nothing for twice the write timeout.
        await asyncio.sleep(2 * WRITE_TIMEOUT_S)

        async def cut() -> bool:
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 0.5)
            except asyncio.TimeoutError:
                return False
            except (ConnectionError, ssl.SSLError):
                return True
            return chunk == b""
        # Reading now drains what the gateway sent before it gave up; the end must come, and
        # long before the export could have been read whole.
        started = time.monotonic()
        while not await cut():
            assert time.monotonic() - started < 30, \
                "the gateway kept the connection of a client that did not read"
    finally:
        writer.close()


async def test_connections_that_send_no_headers_are_cut(stack):
    """Fifty connections complete TLS and send nothing (or half a request line): each is
    closed by the gateway within the header timeout, with a margin."""
    ctx = client_ssl_context(stack.ca_path)
    port = stack.gateway_ports["na"]
    conns = [await asyncio.open_connection("127.0.0.1", port, ssl=ctx) for _ in range(50)]
    for i, (_, writer) in enumerate(conns):
        if i % 2:
            writer.write(b"GET /v1/status HTT")
            await writer.drain()
    started = time.monotonic()
    for reader, writer in conns:
        try:
            data = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT_S + 5)
        except (ConnectionError, ssl.SSLError):
            data = b""
        except asyncio.TimeoutError:
            pytest.fail("a connection without headers was still open after "
                        f"{HEADER_TIMEOUT_S + 5} s")
        assert data == b""
        writer.close()
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 5


async def test_json_nested_past_the_bound_is_refused_by_name(work):
    """An upload line or an acknowledgement nested 100,000 deep: a refusal naming the depth,
    not a 500; the gateway goes on serving."""
    tenant = await work.onboarded("na")
    client = work.client(tenant, "connector")
    deep = "[" * 100_000 + "]" * 100_000
    body = await client.request("POST", "/v1/records", data=(deep + "\n").encode(),
                                headers={"Content-Type": "application/x-ndjson"})
    assert body["refused"][0]["reason"] == "json_too_deep", body
    with pytest.raises(GatewayError) as refused:
        await client.request("POST", "/v1/relay/ack", data=('{"record_ids": ' + deep + "}").encode(),
                             headers={"Content-Type": "application/json"})
    assert (refused.value.status, refused.value.code) == (400, "json_too_deep"), refused.value
    assert (await client.status())["tenant_id"] == tenant


async def test_a_token_living_longer_than_the_maximum_is_refused(work, stack):
    """A well-signed token claiming ten years is refused with its reason; one of exactly the
    maximum (24 h) is accepted."""
    tenant = await work.onboarded("eu")
    long_lived = issuer(stack).issue(tenant, "auditor", 10 * 365 * 86400)
    with pytest.raises(GatewayError) as refused:
        await work.client(tenant, "auditor", token=long_lived).status()
    assert refused.value.status == 401 and refused.value.body["reason"] == "lifetime_too_long", \
        refused.value.body
    day = issuer(stack).issue(tenant, "auditor", 24 * 3600)
    assert (await work.client(tenant, "auditor", token=day).status())["tenant_id"] == tenant
