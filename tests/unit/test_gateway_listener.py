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
