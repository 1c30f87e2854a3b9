"""The gateway's isolation guards (services/gateway/guards.py) on their own: per-tenant slots,
and the connection guard in front of a real loopback server."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdmbus.services.gateway.guards import (STREAM_SEND_BUFFER, ConnectionGuard, SlotsFull,
                                           SourceLimits, TenantSlots, _Door, _Guarded,
                                           bound_send_buffer)
from mdmbus.services.gateway.listener import Listener


def test_a_tenant_gets_its_cap_of_one_kind_and_no_more_while_others_are_unaffected():
    slots = TenantSlots({"export": 2, "read": 1})
    with slots.hold("a", "export"), slots.hold("a", "export"):
        with pytest.raises(SlotsFull, match="at most 2 export"):
            with slots.hold("a", "export"):
                pass
        with slots.hold("b", "export"), slots.hold("a", "read"):  # another tenant, another kind
            assert slots.in_flight() == 4
    assert slots.in_flight() == 0
    with slots.hold("a", "export"):  # released on exit, errors included
        pass


def test_a_slot_is_released_when_the_request_fails():
    slots = TenantSlots({"read": 1})
    with pytest.raises(RuntimeError):
        with slots.hold("a", "read"):
            raise RuntimeError("handler failed")
    with slots.hold("a", "read"):
        assert slots.in_flight() == 1


class _Echo(asyncio.Protocol):
    """Answers "ok" to each complete request head; stands for aiohttp's protocol."""

    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(b"ok\n")

    def connection_lost(self, exc):
        pass


async def _listen(guard: ConnectionGuard) -> tuple[Listener, int]:
    """The guard's door on a loopback port of its own: (the listener, its port)."""
    listener = await Listener.open(guard, "127.0.0.1", 0)
    return listener, listener.sockets[0].getsockname()[1]


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True


async def test_the_guard_cuts_silent_connections_and_caps_open_ones():
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=3, header_timeout_s=0.3,
                            on_cut=cuts.append)
    server, port = await _listen(guard)
    try:
        # A client that sends a complete head in time is served and not cut after.
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await r1.readline() == b"ok\n"
        # Two silent ones fill the cap; a fourth is closed at once.
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        r4, _ = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(r4, 1.0)
        # The silent ones are cut after the header timeout; the served one stays open.
        for reader, _ in silent:
            assert await _closed(reader, 2.0)
        w1.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await r1.readline() == b"ok\n"
        assert sorted(cuts) == ["over_cap", "slow_headers", "slow_headers"]
        assert (guard.cut, guard.refused, guard.open) == (2, 1, 1)
        w1.close()
        for _, writer in silent:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  path: str = "/") -> bytes:
    """One HTTP/1.1 request kept alive; the answer's body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return await asyncio.wait_for(reader.readexactly(length), 5)


async def test_at_the_cap_an_idle_kept_alive_connection_makes_room_and_busy_ones_do_not():
    """aiohttp's own protocol behind the guard: a client that leaves each connection idle
    after one answer (as a pool per TLS context does) is served on every new one, the
    connection idle the longest being closed in order; connections busy with a request are
    never closed for a newcomer, which is refused instead."""
    from aiohttp import web

    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await release.wait()
        return web.Response(text="ok")

    cuts: list[str] = []
    server = web.Server(handler)
    guard = ConnectionGuard(server, max_connections=3, header_timeout_s=5, on_cut=cuts.append)
    listener, port = await _listen(guard)
    conns = []
    try:
        for _ in range(8):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conns.append((reader, writer))
            assert await _answer(reader, writer) == b"ok"
        # The five oldest were closed in an orderly way (EOF after their answer); the three
        # newest still answer.
        for reader, _ in conns[:5]:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        for reader, writer in conns[5:]:
            assert await _answer(reader, writer) == b"ok"
        assert cuts == ["idle_closed"] * 5 and (guard.open, guard.reclaimed) == (3, 5)

        # Three requests in progress: a fourth connection finds nobody idle and is refused.
        for _, writer in conns[5:]:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()

        def all_busy() -> bool:
            return not any(c.idle() for pool in guard.live.values() for c in pool)
        deadline = asyncio.get_running_loop().time() + 5
        while not all_busy():
            assert asyncio.get_running_loop().time() < deadline, "requests never started"
            await asyncio.sleep(0.01)
        r9, w9 = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(r9, 2.0)
        w9.close()
        assert cuts[-1] == "over_cap" and guard.open == 3
        release.set()
        for reader, _ in conns[5:]:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
    finally:
        for _, writer in conns:
            writer.close()
        listener.close()
        await listener.wait_closed()
        await server.shutdown(1)


async def _connect_from(source: str, port: int):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def test_one_source_over_its_rate_or_its_cap_is_refused_while_another_is_served():
    """Per source address: a burst of 3 new connections, then 1 a second (a clock the test
    moves), at most 4 open; 127.0.0.2 refused over either does not cost 127.0.0.3 anything."""
    now = [0.0]
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=100, header_timeout_s=30,
                            on_cut=cuts.append, per_source=SourceLimits(4, 1.0, 3),
                            clock=lambda: now[0])
    server, port = await _listen(guard)
    writers = []

    async def served(source: str) -> bool:
        reader, writer = await _connect_from(source, port)
        writers.append(writer)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return await asyncio.wait_for(reader.readline(), 2) == b"ok\n"
        except ConnectionError:
            return False

    try:
        assert [await served("127.0.0.2") for _ in range(4)] == [True, True, True, False]
        assert cuts == ["source_rate"]
        assert [await served("127.0.0.3") for _ in range(3)] == [True] * 3
        now[0] += 1.0  # one token back: one more connection, the fourth open
        assert await served("127.0.0.2") and not await served("127.0.0.2")
        now[0] += 5.0  # tokens enough, but four are open (none idle): the cap refuses
        assert not await served("127.0.0.2")
        assert cuts == ["source_rate", "source_rate", "source_cap"]
        assert guard.open_by_source == {"127.0.0.2": 4, "127.0.0.3": 3}
        # Its connections closed, the address is served again.
        for writer in writers[:3]:
            writer.close()
        deadline = asyncio.get_running_loop().time() + 5
        while guard.open_by_source["127.0.0.2"] > 1:
            assert asyncio.get_running_loop().time() < deadline, guard.open_by_source
            await asyncio.sleep(0.01)
        assert await served("127.0.0.2")
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def test_token_buckets_of_addresses_seen_once_are_forgotten_once_full():
    now = [0.0]
    guard = ConnectionGuard(_Echo, max_connections=10**6, header_timeout_s=1,
                            per_source=SourceLimits(10, 1.0, 2), clock=lambda: now[0])
    guard.BUCKETS_KEPT = 100
    for i in range(100):
        assert guard.admit(f"10.0.0.{i}")
    now[0] += 2.0  # every bucket full again
    assert guard.admit("10.0.1.1")
    assert len(guard._buckets) == 1

async def test_a_first_request_with_a_large_body_in_one_read_is_not_cut_while_it_runs():
    """The head and more than 4 KiB of body in one read (what a TLS record brings): the head's
    end is seen, so a handler slower than the header timeout is not cut (it was, when only the
    last 4 KiB of what came were searched)."""
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=3, header_timeout_s=0.3,
                            on_cut=cuts.append)
    server, port = await _listen(guard)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\n\r\n"
                     + b"x" * 16000)
        assert await reader.readline() == b"ok\n"
        # Split over reads: the end of a head arriving in two pieces counts as well.
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
        await w2.drain()
        await asyncio.sleep(0.05)
        w2.write(b"\n")
        assert await r2.readline() == b"ok\n"
        # Past the header timeout neither is closed (nothing, not even EOF, arrives), and both
        # answer.
        for r in (reader, r2):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.read(1), 0.5)
        assert cuts == []
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await reader.readline() == b"ok\n"
        writer.close()
        w2.close()
    finally:
        server.close()
        await server.wait_closed()


def _tls_pair(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(tmp_path / "c.pem")
    return server, client


async def _until(condition, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_over_tls_a_client_is_served_and_a_silent_handshake_is_cut_and_uncounted(
        tmp_path):
    """With TLS (as the gateway runs): a client that completes its handshake is served; one
    that connects and never starts TLS is closed once the header timeout passes, and no
    longer counted against the cap."""
    server_tls, client_tls = _tls_pair(tmp_path)
    guard = ConnectionGuard(_Echo, max_connections=2, header_timeout_s=0.5, tls=server_tls)
    server, port = await _listen(guard)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
        silent, silent_w = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: guard.open == 2 and len(guard._handshakes) == 1)
        handshake = set(guard._handshakes)
        assert await _closed(silent, 3.0)
        # The failed handshake ends its task quietly (nothing raised for the loop to log).
        assert await asyncio.gather(*handshake, return_exceptions=True) == [None]
        await _until(lambda: guard.open == 1)
        assert guard.open_by_source == {"127.0.0.1": 1}
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the served one still is
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
        writer.close()
        silent_w.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_closing_the_guard_ends_the_handshakes_in_progress(tmp_path):
    """The server stopping: a connection still in its TLS handshake is closed at once (not
    after the 30 s handshake timeout) and no longer counted."""
    server_tls, _ = _tls_pair(tmp_path)
    guard = ConnectionGuard(_Echo, max_connections=2, header_timeout_s=30, tls=server_tls)
    server, port = await _listen(guard)
    try:
        silent, silent_w = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: guard.open == 1 and len(guard._handshakes) == 1)
        guard.close()
        assert await _closed(silent, 3.0)
        await _until(lambda: guard.open == 0 and not guard._handshakes)
        silent_w.close()
    finally:
        server.close()
        await server.wait_closed()


def test_token_buckets_refill_at_the_rate_and_are_forgotten_exactly_when_full():
    """A burst of 3, then 2 new connections a second (a clock the test moves): the answers
    below are worked out by hand. A bucket that has refilled to the burst is the same as none
    and is dropped when the table is full; one short of it is kept."""
    now = [0.0]
    guard = ConnectionGuard(_Echo, max_connections=10**6, header_timeout_s=1,
                            per_source=SourceLimits(100, 2.0, 3), clock=lambda: now[0])
    guard.BUCKETS_KEPT = 2
    assert [guard.admit("a") for _ in range(4)] == [True, True, True, False]
    now[0] = 0.25  # half a token back
    assert not guard.admit("a")
    now[0] = 0.5  # a whole one: "a" is admitted once, its bucket empty again
    assert guard.admit("a") and not guard.admit("a")
    assert guard.admit("b")  # 2 tokens left at 0.5
    now[0] = 1.25  # "a" holds 1.5 of 3 (kept), "b" 3.5 (full: forgotten)
    assert guard.admit("c")
    assert set(guard._buckets) == {"a", "c"}
    now[0] = 2.0  # "a" holds exactly 3 (full), "c" 3.5: both forgotten
    assert guard.admit("d")
    assert set(guard._buckets) == {"d"}


async def test_a_cut_tls_connection_is_dropped_even_if_its_client_never_answers(tmp_path):
    """A client that completes its TLS handshake, sends nothing and then ignores everything
    (no close_notify back): cut at the header timeout, its connection is dropped at once and
    no longer counted, not held while TLS waits for an orderly close (30 s)."""
    server_tls, client_tls = _tls_pair(tmp_path)
    guard = ConnectionGuard(_Echo, max_connections=2, header_timeout_s=0.5, tls=server_tls)
    server, port = await _listen(guard)

    def handshake() -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        return client_tls.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        client = await asyncio.to_thread(handshake)
        await _until(lambda: guard.open == 1 and len(guard.live) == 1)
        await _until(lambda: guard.open == 0 and not guard.live, within=3)
        assert guard.cut == 1
        client.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_connection_yet_to_send_its_first_request_is_not_closed_to_make_room():
    """aiohttp's protocol waits for a first request much as it waits between requests; only
    the latter is idle. At the cap, a newcomer is refused rather than cutting a connection
    whose client has not spoken yet (the header timeout is that one's bound)."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    cuts: list[str] = []
    server = web.Server(handler)
    guard = ConnectionGuard(server, max_connections=1, header_timeout_s=5, on_cut=cuts.append)
    listener, port = await _listen(guard)
    try:
        fresh, fresh_w = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: guard.open == 1 and len(guard.live) == 1)
        late, late_w = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(late, 2.0)
        assert cuts == ["over_cap"]
        assert await _answer(fresh, fresh_w) == b"ok"  # the first one is served
        fresh_w.close()
        late_w.close()
    finally:
        listener.close()
        await listener.wait_closed()
        await server.shutdown(1)


async def test_refusing_a_connection_raises_nothing_in_the_event_loop():
    """A connection refused at the door ends quietly: no error reaches the loop's handler
    (where the server's log would show one for every refusal)."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        guard = ConnectionGuard(_Echo, max_connections=0, header_timeout_s=5)
        server, port = await _listen(guard)
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await _closed(reader, 2.0)
            writer.close()
        await _until(lambda: guard.refused == 2)
        for _ in range(5):  # the loop runs the transport's callbacks after the close
            await asyncio.sleep(0)
        server.close()
        await server.wait_closed()
        assert errors == [] and guard.open == 0
    finally:
        loop.set_exception_handler(None)


async def test_each_source_is_counted_apart_and_makes_room_only_among_its_own():
    """Two sources behind aiohttp's protocol, at most 2 connections each: the counts by
    source and the served connections by source are exact at each step; a third connection
    of a source closes that source's connection idle the longest, never another source's
    (even an older one); once all are closed nothing is left in the tables."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    cuts: list[str] = []
    server = web.Server(handler)
    guard = ConnectionGuard(server, max_connections=100, header_timeout_s=5, on_cut=cuts.append,
                            per_source=SourceLimits(2, 1000.0, 1000))
    listener, port = await _listen(guard)
    a, b = "127.0.0.2", "127.0.0.3"
    writers = []

    async def served(source: str):
        reader, writer = await _connect_from(source, port)
        writers.append(writer)
        assert await _answer(reader, writer) == b"ok"
        return reader, writer

    try:
        b1 = await served(b)  # idle the longest of all
        a1 = await served(a)
        await served(a)
        assert guard.open_by_source == {a: 2, b: 1}
        assert {source: len(pool) for source, pool in guard.live.items()} == {a: 2, b: 1}
        await served(a)  # a at its cap: a1 makes room, b1 is left alone
        assert await asyncio.wait_for(a1[0].read(), 5) == b""
        assert await _answer(*b1) == b"ok"
        await _until(lambda: guard.open_by_source == {a: 2, b: 1})
        assert {source: len(pool) for source, pool in guard.live.items()} == {a: 2, b: 1}
        assert (guard.open, guard.reclaimed, guard.refused, cuts) == (3, 1, 0, ["idle_closed"])
        for writer in writers:
            writer.close()
        await _until(lambda: guard.open == 0)
        assert guard.open_by_source == {} and guard.live == {}
    finally:
        listener.close()
        await listener.wait_closed()
        await server.shutdown(1)


async def test_a_source_whose_connections_are_all_in_their_handshake_is_refused_at_its_cap(
        tmp_path):
    """Nothing of a source in its TLS handshake can be idle: at the source's cap the newcomer
    is refused."""
    server_tls, _ = _tls_pair(tmp_path)
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=10, header_timeout_s=5, on_cut=cuts.append,
                            tls=server_tls, per_source=SourceLimits(1, 1000.0, 1000))
    server, port = await _listen(guard)
    try:
        first, first_w = await asyncio.open_connection("127.0.0.1", port)
        await _until(lambda: guard.open == 1)
        second, second_w = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(second, 2.0)
        assert cuts == ["source_cap"] and guard.open == 1
        first_w.close()
        second_w.close()
        guard.close()
    finally:
        server.close()
        await server.wait_closed()


class _Transport:
    """What the guard and _Echo use of a transport, recorded."""

    def __init__(self) -> None:
        self.written, self.aborted, self.closed = b"", False, False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


async def test_a_connection_lost_before_it_was_made_is_uncounted_and_raises_nothing():
    """TLS can lose a connection in the instant between its handshake and start_tls handing
    it over (asyncio then calls connection_lost first): it is no longer counted."""
    guard = ConnectionGuard(_Echo, max_connections=5, header_timeout_s=5)
    assert guard.admit("10.0.0.9")
    _Guarded(guard, _Echo(), "10.0.0.9").connection_lost(None)
    assert guard.open == 0 and guard.open_by_source == {} and guard.live == {}


async def test_a_connection_gone_during_its_handshake_is_aborted_when_tls_hands_it_over():
    guard = ConnectionGuard(_Echo, max_connections=5, header_timeout_s=5)
    assert guard.admit("10.0.0.9")
    guarded = _Guarded(guard, _Echo(), "10.0.0.9")
    guarded.release()  # its plain connection ended while TLS ran
    transport = _Transport()
    guarded.connection_made(transport)
    assert transport.aborted and guard.live == {} and guard.open == 0


async def test_the_guard_keeps_only_the_last_three_bytes_of_an_unfinished_head():
    """Memory per connection: however long a head grows before its blank line, the guard
    keeps three bytes of it (enough to see a blank line split over two reads)."""
    guard = ConnectionGuard(_Echo, max_connections=5, header_timeout_s=5)
    assert guard.admit("10.0.0.9")
    guarded = _Guarded(guard, _Echo(), "10.0.0.9")
    transport = _Transport()
    guarded.connection_made(transport)
    for chunk in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n" * 100, b"X-A: b\r\n\r"):
        guarded.data_received(chunk)
        assert len(guarded._head) <= 3
    guarded.data_received(b"\n")
    assert transport.written == b"ok\n"
    guarded.connection_lost(None)
    assert guard.open == 0


class _SocketOnly:
    """A transport reduced to what bound_send_buffer asks of it."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default=None):
        return self.sock if name == "socket" else default


def test_an_exports_send_buffer_is_capped_in_the_kernel():
    """Oracle: the kernel's own answer (Linux doubles SO_SNDBUF for its bookkeeping, socket(7))."""
    a, b = socket.socketpair()
    try:
        assert bound_send_buffer(_SocketOnly(a), 64 * 1024)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 64 * 1024
        assert bound_send_buffer(_SocketOnly(b))
        assert b.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * STREAM_SEND_BUFFER
        assert STREAM_SEND_BUFFER == 256 * 1024  # the bound the README states
    finally:
        a.close()
        b.close()
    assert not bound_send_buffer(_SocketOnly(a))  # closed: nothing capped, nothing raised
    assert not bound_send_buffer(_SocketOnly(None))
    assert not bound_send_buffer(None)


class _Counted:
    """What a door hands over: counts its releases."""

    def __init__(self) -> None:
        self.released = 0
        self.made: list[object] = []

    def release(self) -> None:
        self.released += 1

    def connection_made(self, transport) -> None:
        self.made.append(transport)


class _PlainTransport:
    def __init__(self) -> None:
        self.protocol = None
        self.paused = False

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        self.paused = True


class _Guard:
    def __init__(self, tls: object | None) -> None:
        self.tls = tls
        self.handshakes: list[tuple[object, object]] = []

    def handshake(self, transport, guarded) -> None:
        self.handshakes.append((transport, guarded))


def test_a_door_releases_its_count_once_and_only_while_it_holds_the_connection():
    """Before asyncio made the connection: lost or abandoned releases it. Plain: once made,
    the connection is the guarded protocol's, and the door releases nothing more. TLS: once
    made, the handshake holds it; abandoning then is not the door's to count."""
    lost_early = _Counted()
    _Door(_Guard(None), lost_early).connection_lost(None)  # type: ignore[arg-type]
    assert lost_early.released == 1

    plain, transport = _Counted(), _PlainTransport()
    door = _Door(_Guard(None), plain)  # type: ignore[arg-type]
    door.connection_made(transport)  # type: ignore[arg-type]
    assert transport.protocol is plain and plain.made == [transport]
    door.connection_lost(None)
    door.abandoned()
    assert plain.released == 0

    tls, transport, guard = _Counted(), _PlainTransport(), _Guard(object())
    door = _Door(guard, tls)  # type: ignore[arg-type]
    door.connection_made(transport)  # type: ignore[arg-type]
    assert transport.paused and guard.handshakes == [(transport, tls)]
    door.abandoned()
    assert tls.released == 0


def test_a_guard_counts_ipv6_clients_by_the_prefix_it_was_given():
    guard = ConnectionGuard(asyncio.Protocol, 100, 5,
                            per_source=SourceLimits(10, 10.0, 10, v6_prefix=48))
    assert guard.source_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert ConnectionGuard(asyncio.Protocol, 100, 5).source_of("2001:db8:1:2::5") == (
        "2001:db8:1:2::5")  # no per-source limits: the address as it is
