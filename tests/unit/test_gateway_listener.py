"""The gateway's listening sockets (services/gateway/listener.py): a refused connection is
closed as it is accepted, an admitted one reaches the guard's door, a connection gone before
asyncio took it over is no longer counted, and accepting pauses (not spins) when the process
is out of descriptors."""

from __future__ import annotations

import asyncio
import errno
import socket

from mdmbus.services.gateway.guards import ConnectionGuard, SourceLimits, source_of
from mdmbus.services.gateway.listener import Listener
from tests.ports import free_port


class _Echo(asyncio.Protocol):
    made = 0

    def connection_made(self, transport):
        _Echo.made += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(b"ok\n")


async def test_refused_connections_never_reach_a_protocol_and_admitted_ones_are_served():
    """A burst of 2 then nothing more from 127.0.0.2: its third connection is closed before
    any protocol exists (the factory is called only for the admitted two), while 127.0.0.3 is
    served."""
    _Echo.made = 0
    made: list[str] = []

    def factory() -> asyncio.Protocol:
        made.append("x")
        return _Echo()

    guard = ConnectionGuard(factory, 100, 5, per_source=SourceLimits(10, 1e-9, 2))
    listener = await Listener.open(guard, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    writers = []
    try:
        async def answer(source: str) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
            writers.append(writer)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            try:
                return await asyncio.wait_for(reader.readline(), 5)
            except ConnectionError:
                return b""

        assert [await answer("127.0.0.2") for _ in range(3)] == [b"ok\n", b"ok\n", b""]
        assert await answer("127.0.0.3") == b"ok\n"
        assert len(made) == 3 and _Echo.made == 3
        assert guard.refused == 1 and guard.open_by_source["127.0.0.2"] == 2
    finally:
        for writer in writers:
            writer.close()
        listener.close()
        await listener.wait_closed()


async def test_a_connection_gone_before_the_hand_over_is_no_longer_counted():
    guard = ConnectionGuard(_Echo, 100, 5)
    assert guard.admit("192.0.2.1")
    door = guard.door("192.0.2.1")
    door.abandoned()
    assert guard.open == 0 and not guard.open_by_source
    door.abandoned()  # once only
    assert guard.open == 0


async def test_out_of_descriptors_pauses_accepting_then_resumes(monkeypatch):
    """accept() failing with EMFILE: the socket's reader is removed (no busy loop on a socket
    that stays readable) and put back after the pause; the connection waiting is then
    served."""
    import mdmbus.services.gateway.listener as listener_module
    monkeypatch.setattr(listener_module, "_PAUSE_S", 0.05)
    guard = ConnectionGuard(_Echo, 100, 5)
    listener = await Listener.open(guard, "127.0.0.1", 0)
    sock = listener.sockets[0]
    port = sock.getsockname()[1]
    real_accept = socket.socket.accept
    failures = [OSError(errno.EMFILE, "Too many open files")]

    def accept(self):
        if self is sock and failures:
            raise failures.pop()
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
        assert not failures  # the failure happened, and the connection was served after it
        writer.close()
    finally:
        listener.close()
        await listener.wait_closed()


async def test_a_name_with_two_addresses_is_listened_on_at_both():
    guard = ConnectionGuard(_Echo, 100, 5)
    infos = {i[4][0] for i in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    listener = await Listener.open(guard, "localhost", 0)
    try:
        assert {s.getsockname()[0] for s in listener.sockets} == infos
    finally:
        listener.close()
    assert all(s.fileno() == -1 for s in listener.sockets)


def test_an_ipv6_client_counts_by_its_network_and_a_mapped_ipv4_one_by_its_address():
    """Oracle: prefixes written out by hand."""
    assert source_of("2001:db8:0:1:aaaa::1") == "2001:db8:0:1::/64"
    assert source_of("2001:db8:0:1:ffff:ffff:ffff:ffff") == "2001:db8:0:1::/64"
    assert source_of("2001:db8:0:2::1") == "2001:db8:0:2::/64"
    assert source_of("2001:db8:0:1:aaaa::1", 48) == "2001:db8::/48"
    assert source_of("fe80::1%eth0") == "fe80::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_of("192.0.2.7") == "192.0.2.7"


def test_every_address_of_one_ipv6_network_shares_one_bucket():
    """A burst of 3 for a /64: the fourth address of it is refused, another /64 is not."""
    guard = ConnectionGuard(_Echo, 100, 5, per_source=SourceLimits(100, 1e-9, 3))
    admitted = [guard.admit(guard.source_of(f"2001:db8:0:1::{i:x}")) for i in range(1, 5)]
    assert admitted == [True, True, True, False]
    assert guard.admit(guard.source_of("2001:db8:0:2::1"))
    assert guard.open_by_source == {"2001:db8:0:1::/64": 3, "2001:db8:0:2::/64": 1}


async def test_a_connection_over_ipv6_is_served_and_counted_by_its_network():
    guard = ConnectionGuard(_Echo, 100, 5, per_source=SourceLimits(10, 10.0, 10))
    listener = await Listener.open(guard, "::1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
        assert guard.open_by_source == {"::/64": 1}
        writer.close()
    finally:
        listener.close()


async def _queued_clients(port: int, source: str, n: int) -> list[socket.socket]:
    """n connections from ``source`` completed by the kernel (the backlog) and not accepted."""
    clients = []
    for _ in range(n):
        c = socket.socket()
        c.bind((source, 0))
        c.connect(("127.0.0.1", port))
        clients.append(c)
    return clients


async def test_one_pass_accepts_a_batch_and_a_refusal_does_not_end_it():
    """20 connections waiting, the source allowed one: a pass of the event loop puts exactly
    ACCEPT_BATCH (16) of them to the door, refusals included, the next pass the other 4."""
    guard = ConnectionGuard(_Echo, 100, 5, per_source=SourceLimits(10, 1e-9, 1))
    asked: list[str] = []
    admit = guard.admit
    guard.admit = lambda source: asked.append(source) or admit(source)  # type: ignore
    listener = await Listener.open(guard, "127.0.0.1", 0)
    sock = listener.sockets[0]
    loop = asyncio.get_running_loop()
    assert loop.remove_reader(sock.fileno())  # the test runs the passes itself
    clients = await _queued_clients(sock.getsockname()[1], "127.0.0.2", 20)
    try:
        listener._accept(sock)
        assert asked == ["127.0.0.2"] * 16
        assert guard.refused == 15 and guard.open == 1
        listener._accept(sock)
        assert len(asked) == 20 and guard.refused == 19
        listener._accept(sock)  # nothing left: returns at once
        assert len(asked) == 20
        await listener.wait_closed()
        assert not listener._handovers  # a finished hand-over is forgotten
    finally:
        for c in clients:
            c.close()
        listener.close()
        await listener.wait_closed()


async def test_running_out_of_descriptors_is_logged_and_not_an_error(monkeypatch, caplog):
    """EMFILE from accept(): a warning that says so, the reader off for the pause, nothing
    raised into the event loop; any other accept() error is raised."""
    guard = ConnectionGuard(_Echo, 100, 5)
    listener = await Listener.open(guard, "127.0.0.1", 0)
    sock = listener.sockets[0]
    loop = asyncio.get_running_loop()
    raised: list[object] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: raised.append(context))
    errors = iter([OSError(errno.EMFILE, "Too many open files"),
                   OSError(errno.EPERM, "Operation not permitted")])

    def accept(self):
        raise next(errors)

    try:
        monkeypatch.setattr(socket.socket, "accept", accept)
        with caplog.at_level("WARNING", logger="mdmbus.gateway"):
            listener._accept(sock)
        assert [r.getMessage() for r in caplog.records] == [
            "the gateway cannot accept connections (Too many open files): pausing 1 s"]
        assert not loop.remove_reader(sock.fileno())  # already off: paused
        assert not raised
        listener._resume(sock)
        try:
            listener._accept(sock)
        except OSError as exc:
            assert exc.errno == errno.EPERM
        else:
            raise AssertionError("an accept() error other than running out was swallowed")
    finally:
        monkeypatch.undo()
        loop.set_exception_handler(previous)
        listener.close()
        await listener.wait_closed()


async def test_a_closed_listener_stays_closed():
    """close() twice is harmless, and a pause ending after close() does not re-arm a closed
    socket."""
    listener = await Listener.open(ConnectionGuard(_Echo, 100, 5), "127.0.0.1", 0)
    sock = listener.sockets[0]
    listener.close()
    listener.close()
    listener._resume(sock)  # a pause that ends now: nothing to re-arm
    assert sock.fileno() == -1


async def test_a_connection_that_fails_its_hand_over_is_closed_and_uncounted(caplog):
    """asyncio cannot take the connection (here: closed already, an OSError): the hand-over
    ends quietly, the door's count is given back."""
    guard = ConnectionGuard(_Echo, 100, 5)
    listener = await Listener.open(guard, "127.0.0.1", 0)
    try:
        assert guard.admit("192.0.2.9")
        conn = socket.socket()
        conn.close()
        listener._start_hand_over(conn, "192.0.2.9")
        await listener.wait_closed()
        assert guard.open == 0 and not guard.open_by_source
        assert not listener._handovers
        assert not caplog.records
    finally:
        listener.close()


async def test_a_hand_over_failing_otherwise_is_logged_closed_and_uncounted(monkeypatch,
                                                                           caplog):
    """Not the client's doing (an error of ours, here a RuntimeError): logged as an error,
    the connection closed, the count given back."""
    guard = ConnectionGuard(_Echo, 100, 5)
    listener = await Listener.open(guard, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()

    async def broken(*_args, **_kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(loop, "connect_accepted_socket", broken)
    a, b = socket.socketpair()
    try:
        assert guard.admit("192.0.2.10")
        listener._start_hand_over(a, "192.0.2.10")
        await listener.wait_closed()
        assert guard.open == 0 and not guard.open_by_source
        assert a.fileno() == -1
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("ERROR", "handing a connection over to asyncio failed")]
        assert "RuntimeError: broken on purpose" in caplog.text  # its traceback
    finally:
        listener.close()
        b.close()


async def test_closing_while_hand_overs_wait_ends_them_without_an_error(caplog):
    """close() cancels the hand-overs not yet begun (their coroutines never ran): each
    connection is closed (its client reads the end) and no longer counted."""
    guard = ConnectionGuard(_Echo, 100, 5)
    listener = await Listener.open(guard, "127.0.0.1", 0)
    sock = listener.sockets[0]
    assert asyncio.get_running_loop().remove_reader(sock.fileno())
    clients = await _queued_clients(sock.getsockname()[1], "127.0.0.4", 3)
    try:
        listener._accept(sock)
        tasks = list(listener._handovers)
        assert len(tasks) == 3 and guard.open == 3
        listener.close()
        await listener.wait_closed()
        assert all(t.cancelled() for t in tasks)
        assert guard.open == 0 and not guard.open_by_source
        for c in clients:
            c.settimeout(5)
            assert c.recv(1) == b""  # closed by the gateway, not left open
        assert not caplog.records
    finally:
        for c in clients:
            c.close()


async def test_the_port_asked_for_is_the_port_listened_on():
    port = free_port()
    listener = await Listener.open(ConnectionGuard(_Echo, 100, 5), "127.0.0.1", port)
    try:
        assert [s.getsockname()[1] for s in listener.sockets] == [port]
    finally:
        listener.close()


async def test_no_host_listens_on_every_interface():
    """Oracle: the wildcard addresses (0.0.0.0, and :: where the machine has IPv6), not the
    loopback addresses a resolver gives for no host without AI_PASSIVE."""
    port = free_port("0.0.0.0")
    listener = await Listener.open(ConnectionGuard(_Echo, 100, 5), None, port)
    try:
        bound = {s.getsockname()[0] for s in listener.sockets}
        assert "0.0.0.0" in bound and bound <= {"0.0.0.0", "::"}
    finally:
        listener.close()
