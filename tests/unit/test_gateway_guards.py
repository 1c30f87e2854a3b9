"""The gateway's isolation guards (services/gateway/guards.py) on their own: per-tenant slots,
and the connection guard in front of a real loopback server."""

from __future__ import annotations

import asyncio

import pytest

from mdmbus.services.gateway.guards import ConnectionGuard, SlotsFull, TenantSlots


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


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionError:
        return True


async def test_the_guard_cuts_silent_connections_and_caps_open_ones():
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=3, header_timeout_s=0.3,
                            on_cut=cuts.append)
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
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
        assert guard.open == 1
        w1.close()
        for _, writer in silent:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_first_request_with_a_large_body_in_one_read_is_not_cut_while_it_runs():
    """The head and more than 4 KiB of body in one read (what a TLS record brings): the head's
    end is seen, so a handler slower than the header timeout is not cut (it was, when only the
    last 4 KiB of what came were searched)."""
    cuts: list[str] = []
    guard = ConnectionGuard(_Echo, max_connections=3, header_timeout_s=0.3,
                            on_cut=cuts.append)
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
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
