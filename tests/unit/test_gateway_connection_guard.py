"""The gateway's connection guard (services/gateway/guards.py ConnectionGuard) driven by hand,
one event at a time: what it counts, what it passes to aiohttp's protocol, and how it cuts a
connection. Fakes stand for the transport and aiohttp's protocol (a unit test; the test of
the same guard on real sockets is in test_gateway_guards.py)."""

from __future__ import annotations

import asyncio

from mdmbus.services.gateway.guards import ConnectionGuard


class Inner(asyncio.Protocol):
    def __init__(self, log: list) -> None:
        self.log = log

    def connection_made(self, transport) -> None:
        self.log.append(("made", transport.name))

    def data_received(self, data: bytes) -> None:
        self.log.append(("data", data))

    def eof_received(self):
        self.log.append(("eof",))
        return True

    def connection_lost(self, exc) -> None:
        self.log.append(("lost", exc))

    def pause_writing(self) -> None:
        self.log.append(("pause",))

    def resume_writing(self) -> None:
        self.log.append(("resume",))


class Transport:
    def __init__(self, name: str, log: list, abortable: bool = True) -> None:
        self.name, self.log = name, log
        if abortable:
            self.abort = lambda: log.append(("abort", name))

    def close(self) -> None:
        self.log.append(("close", self.name))


async def test_counts_passes_on_and_cuts_one_event_at_a_time():
    log: list = []
    cuts: list[str] = []
    guard = ConnectionGuard(lambda: Inner(log), max_connections=2, header_timeout_s=60,
                            on_cut=cuts.append)
    assert (guard.open, guard.refused, guard.cut) == (0, 0, 0)
    a, b, c = guard(), guard(), guard()
    a.connection_made(Transport("a", log))
    b.connection_made(Transport("b", log))
    c.connection_made(Transport("c", log, abortable=False))  # over the cap: closed at once
    assert (guard.open, guard.refused, guard.cut) == (2, 1, 0)
    assert cuts == ["over_cap"]
    assert log == [("made", "a"), ("made", "b"), ("close", "c")]
    # the refused one never reaches aiohttp, whatever comes after
    c.data_received(b"GET / HTTP/1.1\r\n\r\n")
    assert c.eof_received() is None
    c.pause_writing()
    c.resume_writing()
    c.connection_lost(None)
    assert (guard.open, guard.refused) == (2, 1) and log[3:] == []
    # a's head arrives in pieces, the end of headers split across them: its timer is cancelled
    a.data_received(b"GET / HTTP/1.1\r\nHost: x\r")
    a.data_received(b"\n\r\n")
    assert a._timer is None and a._head == b""
    # b stays silent: cut when its timer fires (called here), counted once, aborted
    b._too_slow()
    assert (guard.open, guard.refused, guard.cut) == (2, 1, 1)
    assert cuts == ["over_cap", "slow_headers"]
    assert log[-1] == ("abort", "b")
    a.pause_writing()
    a.resume_writing()
    assert a.eof_received() is True
    error = ConnectionResetError("gone")
    a.connection_lost(error)
    b.connection_lost(None)
    b.connection_lost(None)  # a second loss is not counted again
    assert guard.open == 0
    assert log[2:] == [("close", "c"), ("data", b"GET / HTTP/1.1\r\nHost: x\r"),
                       ("data", b"\n\r\n"), ("abort", "b"), ("pause",), ("resume",), ("eof",),
                       ("lost", error), ("lost", None)]
    # a connection once more under the cap is accepted again
    d = guard()
    d.connection_made(Transport("d", log))
    assert (guard.open, guard.refused, guard.cut) == (1, 1, 1)
    # the counts add up: a second refusal, a second cut
    e, f = guard(), guard()
    e.connection_made(Transport("e", log))
    f.connection_made(Transport("f", log))
    e._too_slow()
    assert (guard.open, guard.refused, guard.cut) == (2, 2, 2)
    assert cuts == ["over_cap", "slow_headers", "over_cap", "slow_headers"]
    for conn in (d, e):
        conn.connection_lost(None)
    assert guard.open == 0


async def test_only_the_last_4_kib_are_searched_for_the_end_of_headers():
    log: list = []
    guard = ConnectionGuard(lambda: Inner(log), max_connections=1, header_timeout_s=60)
    conn = guard()
    conn.connection_made(Transport("a", log))
    conn.data_received(b"x" * 5000)
    assert conn._head == b"x" * 4096
    conn.data_received(b"\r\n\r\n")
    assert conn._timer is None and conn._head == b""
    conn.connection_lost(None)
