"""What keeps one tenant, or one client, from degrading everybody else's service at a regional
gateway (docs/design.md rule 8, isolation):

- :class:`TenantSlots`: how many requests of one kind one tenant may have in flight; one more
  is answered 429 at once, so a tenant cannot queue up the region's database connections;
- :func:`bounded_acquire`: a database connection is waited for a bounded time, then 503 with
  Retry-After, never an unbounded queue behind a slow neighbour;
- :class:`ConnectionGuard`: a cap on open connections, and a deadline for a new connection's
  first request line and headers (aiohttp has an idle keep-alive timeout but no header
  timeout), so slow or silent clients cannot pile up sockets and buffers. At the cap, a
  connection that sits idle between requests is closed to make room (what its keep-alive
  timeout would do later); only when every open connection is busy is the new one refused.
  Idle kept-alive connections are cheap for a client to leave behind (a pool per TLS
  context, per host), and counting them against the cap like busy ones let one such client
  reset everybody's new connections.

The export handler adds the last piece itself: it pages through the store and holds no
connection while it writes to the client, and each write has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import asyncpg
from mdmbus.services.stores.pools import Connection

__all__ = ["TenantSlots", "SlotsFull", "bounded_acquire", "StoreBusy", "ConnectionGuard",
           "SourceLimits", "source_of", "ROUTE_KINDS", "bound_send_buffer",
           "STREAM_SEND_BUFFER"]

#: Which kind of work each route is, for the per-tenant caps (settings.gateway_tenant_slots).
ROUTE_KINDS = {
    "upload": "write", "relay_download": "relay", "relay_ack": "relay", "export": "export",
    "status": "read", "erasure_receipt": "read", "deletion_request": "delete",
    "holdings": "read", "erasure_receipts": "read",
}


class SlotsFull(Exception):
    def __init__(self, kind: str, limit: int) -> None:
        super().__init__(f"at most {limit} {kind} requests of one tenant at a time")
        self.kind, self.limit = kind, limit


class TenantSlots:
    """Requests in flight per (tenant, kind of route), capped per kind; no waiting."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = dict(limits)
        self._busy: Counter[tuple[Any, str]] = Counter()

    @contextlib.contextmanager
    def hold(self, tenant: Any, kind: str):
        key = (tenant, kind)
        limit = self.limits[kind]
        if self._busy[key] >= limit:
            raise SlotsFull(kind, limit)
        self._busy[key] += 1
        try:
            yield
        finally:
            self._busy[key] -= 1
            if not self._busy[key]:
                del self._busy[key]

    def in_flight(self) -> int:
        return sum(self._busy.values())


class StoreBusy(Exception):
    """No database connection became free within the bound."""


@contextlib.asynccontextmanager
async def bounded_acquire(pool: asyncpg.Pool, timeout_s: float
                          ) -> AsyncIterator[Connection]:
    try:
        conn = await pool.acquire(timeout=timeout_s)
    except asyncio.TimeoutError:
        raise StoreBusy(f"no database connection free within {timeout_s:g} s") from None
    try:
        yield conn
    finally:
        await pool.release(conn)


#: What the kernel may hold of a streamed response for a client that does not read (SO_SNDBUF,
#: which Linux doubles for its bookkeeping). Left to itself the kernel grows a loopback or
#: LAN connection's send buffer to megabytes, and an export nobody reads ran through that
#: much of its tenant's store, opening, decoding and encoding every record, before its first
#: write had to wait: one tenant's unread exports took a third of the gateway's event loop
#: (bench.gateway_isolation). 256 KiB still fills a 100 ms round trip at 2.5 MB/s.
STREAM_SEND_BUFFER = 256 * 1024


def bound_send_buffer(transport: asyncio.BaseTransport | None,
                      size: int = STREAM_SEND_BUFFER) -> bool:
    """Caps the kernel's send buffer of the connection under ``transport`` (TLS or plain);
    False when there is no socket to cap (a test transport)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        return False
    return True


def _between_requests(handler: asyncio.Protocol) -> bool:
    """Whether aiohttp's protocol has had a request on its connection and now waits for the
    next one with nothing queued: the state in which aiohttp's own keep-alive timer closes a
    connection (aiohttp 3's RequestHandler: requests counted as they are parsed, the waiter
    pending while none is queued). A connection still to send its first request is not
    between requests (the header timeout is its bound). False for a protocol that is not
    aiohttp's."""
    waiter = getattr(handler, "_waiter", None)
    return (getattr(handler, "_request_count", 0) > 0 and waiter is not None
            and not waiter.done() and not getattr(handler, "_messages", True))


@dataclass(frozen=True)
class SourceLimits:
    """What one source may hold at the door: connections open at once (TLS handshakes in
    progress included), and new connections a second, sustained, with a burst (a token
    bucket; every attempt takes a token, refused ones too, so a source that retries without
    pause stays refused until it slows down). A source is an IPv4 address, or an IPv6
    network of ``v6_prefix`` bits (64: one subscriber's network, which its owner can fill
    with as many addresses as it likes)."""

    max_connections: int
    rate_per_s: float
    burst: int
    v6_prefix: int = 64


def source_of(address: str, v6_prefix: int = 64) -> str:
    """The source a peer address counts against: an IPv4 address as it is (an IPv4-mapped IPv6
    address as its IPv4 address), an IPv6 address as its network of ``v6_prefix`` bits, in
    canonical form (``2001:db8:0:1::/64``)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address)  # a zone (fe80::1%eth0) is dropped by the network
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, v6_prefix), strict=False))


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp = tokens, stamp


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's protocol; counts the connection (for its source and in
    all) from its admission at the door to its end, and cuts it if its first request's headers
    are not complete in time."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol, source: str) -> None:
        self.guard, self.inner, self.source = guard, inner, source
        self.transport: asyncio.BaseTransport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None
        #: Whether aiohttp was told of the connection.
        self._accepted = False
        #: Whether the connection counts against the caps (from admission; no longer once
        #: closed to make room, or once gone).
        self._counted = True
        #: When the client last sent bytes (time.monotonic()).
        self.last_in = time.monotonic()
        #: What TLS delivered before connection_made: asyncio's start_tls hands the first
        #: decrypted bytes (often the whole first request) to the protocol as the handshake
        #: completes, before it returns the transport that connection_made is called with.
        self._early: list[bytes] = []
        self._early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self._counted:  # gone while its handshake ran
            _abort(transport)
            return
        self.guard.serving(self)
        self._accepted = True
        self._timer = asyncio.get_running_loop().call_later(self.guard.header_timeout_s,
                                                            self._too_slow)
        self.inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._early_eof:
            self.eof_received()

    def _too_slow(self) -> None:
        self._timer = None
        self.guard.cut += 1
        self.guard.on_cut("slow_headers")
        if self.transport is not None:
            _abort(self.transport)

    def idle(self) -> bool:
        """Between two requests, and still counted (see :func:`_between_requests`)."""
        return self._counted and self._accepted and _between_requests(self.inner)

    def close_idle(self) -> None:
        """Closes the connection as aiohttp's keep-alive timeout would (the client sees an
        orderly close between requests, not a reset), and stops counting it at once."""
        self.release()
        force_close = getattr(self.inner, "force_close", None)
        if force_close is not None:
            force_close()
        elif self.transport is not None:
            self.transport.close()

    def release(self) -> None:
        """No longer counted: once, however the connection ends."""
        if self._counted:
            self._counted = False
            self.guard.released(self)

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            if self._counted:
                self._early.append(data)
            return
        self.last_in = time.monotonic()
        if self._timer is not None:
            # The end of the head is looked for in what came, then only the last 3 bytes are
            # kept (an end split over two reads): a head and a body in one read end the wait
            # too, and a long-running first request is never cut.
            seen = self._head + data
            if b"\r\n\r\n" in seen:
                self._timer.cancel()
                self._timer, self._head = None, b""
            else:
                self._head = seen[-3:]
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        if not self._accepted:
            self._early_eof = self._counted
            return None
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.release()
        if self._accepted:
            self._accepted = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._accepted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._accepted:
            self.inner.resume_writing()


class _Door(asyncio.Protocol):
    """A plain TCP connection the guard admitted as it was accepted (services/gateway/
    listener.py), before a byte of TLS: handed to TLS, then to aiohttp."""

    def __init__(self, guard: "ConnectionGuard", guarded: _Guarded) -> None:
        self.guard = guard
        self.guarded: _Guarded | None = guarded
        self._handed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guarded = self.guarded
        assert guarded is not None
        self._handed = True
        if self.guard.tls is None:
            transport.set_protocol(guarded)
            self.guarded = None
            guarded.connection_made(transport)
            return
        # Nothing is read until TLS takes the connection over (start_tls resumes reading).
        transport.pause_reading()  # type: ignore[attr-defined]
        self.guard.handshake(transport, guarded)

    def abandoned(self) -> None:
        """The connection went before asyncio took it over: it is no longer counted."""
        if self.guarded is not None and not self._handed:
            self.guarded.release()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guarded is not None:  # gone before TLS took it over
            self.guarded.release()


def _abort(transport: asyncio.BaseTransport) -> None:
    abort = getattr(transport, "abort", None)
    abort() if abort is not None else transport.close()


class ConnectionGuard:
    """The door of the gateway's listening sockets (:class:`~mdmbus.services.gateway.listener.
    Listener` asks :meth:`admit` as it accepts), around aiohttp's protocol factory
    (``web.Server``).

    At the door, on the plain TCP connection, before any TLS work: a source address over its
    rate of new connections (``per_source``) is closed at once, and so is a connection over
    the cap of its source or over ``max_connections`` in all, unless a connection idle between
    requests (of that source, or of anyone for the overall cap) can be closed to make room:
    the one idle the longest is. Then TLS (``tls``; None: plain, for tests), with
    ``header_timeout_s`` for the handshake, and ``header_timeout_s`` again for the first
    request's headers. Later requests on a kept-alive connection are bounded by aiohttp's
    keep-alive timeout and the gateway's body timeout."""

    #: Source addresses whose token buckets are kept before full ones are forgotten.
    BUCKETS_KEPT = 4096

    def __init__(self, factory: Callable[[], asyncio.Protocol], max_connections: int,
                 header_timeout_s: float,
                 on_cut: Callable[[str], None] = lambda reason: None, *,
                 tls: ssl.SSLContext | None = None, per_source: SourceLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.factory = factory
        self.on_cut = on_cut
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.tls, self.per_source, self.clock = tls, per_source, clock
        #: Connections counted: admitted, TLS handshakes in progress included.
        self.open = 0
        self.open_by_source: Counter[str] = Counter()
        #: The counted connections aiohttp serves (the ones that can be idle), by source.
        self.live: dict[str, set[_Guarded]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._handshakes: set[asyncio.Task] = set()
        #: Connections closed at the door (over a rate or a cap), cut for slow headers, and
        #: closed while idle to make room for a new one, since start.
        self.refused = 0
        self.cut = 0
        self.reclaimed = 0

    def source_of(self, address: str) -> str:
        """The source ``address`` counts against (:func:`source_of`)."""
        if self.per_source is None:
            return address
        return source_of(address, self.per_source.v6_prefix)

    def door(self, source: str) -> _Door:
        """The protocol of a connection from ``source`` that :meth:`admit` let in."""
        return _Door(self, _Guarded(self, self.factory(), source))

    # ------------------------------------------------------------------ admission

    def admit(self, source: str) -> bool:
        """Whether a new connection from ``source`` may come in; counted if so."""
        limits = self.per_source
        if limits is not None and not self._take_token(source, limits):
            return self._refuse("source_rate")
        if limits is not None and self.open_by_source[source] >= limits.max_connections \
                and not self.make_room(source):
            return self._refuse("source_cap")
        if self.open >= self.max_connections and not self.make_room(None):
            return self._refuse("over_cap")
        self.open += 1
        self.open_by_source[source] += 1
        return True

    def _refuse(self, reason: str) -> bool:
        self.refused += 1
        self.on_cut(reason)
        return False

    def _take_token(self, source: str, limits: SourceLimits) -> bool:
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.BUCKETS_KEPT:
                self._forget_full_buckets(now, limits)
            bucket = self._buckets[source] = _Bucket(float(limits.burst), now)
        else:
            bucket.tokens = min(float(limits.burst),
                                bucket.tokens + (now - bucket.stamp) * limits.rate_per_s)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full_buckets(self, now: float, limits: SourceLimits) -> None:
        """A bucket that has refilled is the same as none: dropped, so that many addresses
        seen once do not grow the table for ever."""
        for source in [s for s, b in self._buckets.items()
                       if b.tokens + (now - b.stamp) * limits.rate_per_s >= limits.burst]:
            del self._buckets[source]

    def make_room(self, source: str | None) -> bool:
        """Closes the connection idle the longest between requests (of ``source``, or of any
        source), if there is one."""
        pools = [self.live.get(source, ())] if source is not None else self.live.values()
        idle = [c for pool in pools for c in pool if c.idle()]
        if not idle:
            return False
        min(idle, key=lambda c: c.last_in).close_idle()
        self.reclaimed += 1
        self.on_cut("idle_closed")
        return True

    # ------------------------------------------------------------------ a connection's life

    def handshake(self, transport: asyncio.BaseTransport, guarded: _Guarded) -> None:
        task = asyncio.get_running_loop().create_task(self._tls(transport, guarded))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _tls(self, transport: asyncio.BaseTransport, guarded: _Guarded) -> None:
        assert self.tls is not None
        try:
            secured = await asyncio.get_running_loop().start_tls(
                transport, guarded, self.tls, server_side=True,  # type: ignore[arg-type]
                ssl_handshake_timeout=self.header_timeout_s)
        except BaseException as exc:  # a failed or timed-out handshake, or the server stopping
            guarded.release()
            _abort(transport)
            if isinstance(exc, OSError):  # ssl.SSLError, TimeoutError, ConnectionError
                return
            raise
        if secured is None:  # the connection went away during the handshake
            guarded.release()
            return
        guarded.connection_made(secured)

    def close(self) -> None:
        """Stops the handshakes in progress (the server is stopping)."""
        for task in list(self._handshakes):
            task.cancel()

    def serving(self, guarded: _Guarded) -> None:
        self.live.setdefault(guarded.source, set()).add(guarded)

    def released(self, guarded: _Guarded) -> None:
        self.open -= 1
        self.open_by_source[guarded.source] -= 1
        if not self.open_by_source[guarded.source]:
            del self.open_by_source[guarded.source]
        pool = self.live.get(guarded.source)
        if pool is not None:
            pool.discard(guarded)
            if not pool:
                del self.live[guarded.source]
