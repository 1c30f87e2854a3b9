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
import time
from collections import Counter
from typing import Any, AsyncIterator, Callable

import asyncpg

__all__ = ["TenantSlots", "SlotsFull", "bounded_acquire", "StoreBusy", "ConnectionGuard",
           "ROUTE_KINDS"]

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
                          ) -> AsyncIterator[asyncpg.Connection]:
    try:
        conn = await pool.acquire(timeout=timeout_s)
    except asyncio.TimeoutError:
        raise StoreBusy(f"no database connection free within {timeout_s:g} s") from None
    try:
        yield conn
    finally:
        await pool.release(conn)


def _between_requests(handler: asyncio.Protocol) -> bool:
    """Whether aiohttp's protocol has answered a request on its connection, kept it alive and
    now waits for the next one with nothing buffered: the state in which aiohttp's own
    keep-alive timer closes a connection (aiohttp 3's RequestHandler: the keep-alive handle is
    set once an answer was kept alive, the waiter is pending while no request is queued).
    False for anything else, a protocol that is not aiohttp's included."""
    waiter = getattr(handler, "_waiter", None)
    return (getattr(handler, "_keepalive_handle", None) is not None and waiter is not None
            and not waiter.done() and not getattr(handler, "_messages", True))


class _Guarded(asyncio.Protocol):
    """Passes everything to aiohttp's protocol; counts the connection and cuts it if its first
    request's headers are not complete in time."""

    def __init__(self, guard: "ConnectionGuard", inner: asyncio.Protocol) -> None:
        self.guard, self.inner = guard, inner
        self.transport: asyncio.BaseTransport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None
        #: Whether aiohttp was told of the connection (one over the cap never reaches it).
        self._accepted = False
        #: Whether the connection counts against the cap (no longer once closed to make room).
        self._counted = False
        #: When the client last sent bytes (time.monotonic()).
        self.last_in = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.guard.open >= self.guard.max_connections and not self.guard.make_room():
            self.guard.refused += 1
            self.guard.on_cut("over_cap")
            _abort(transport)
            return
        self.guard.open += 1
        self.guard.live.add(self)
        self._accepted = self._counted = True
        self._timer = asyncio.get_running_loop().call_later(self.guard.header_timeout_s,
                                                            self._too_slow)
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        self.guard.cut += 1
        self.guard.on_cut("slow_headers")
        if self.transport is not None:
            _abort(self.transport)

    def idle(self) -> bool:
        """Between two requests, and still counted (see :func:`_between_requests`)."""
        return self._counted and _between_requests(self.inner)

    def close_idle(self) -> None:
        """Closes the connection as aiohttp's keep-alive timeout would (the client sees an
        orderly close between requests, not a reset), and stops counting it at once."""
        self._uncount()
        force_close = getattr(self.inner, "force_close", None)
        if force_close is not None:
            force_close()
        elif self.transport is not None:
            self.transport.close()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.guard.open -= 1
            self.guard.live.discard(self)

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            return
        self.last_in = time.monotonic()
        if self._timer is not None:
            self._head = (self._head + data)[-4096:]
            if b"\r\n\r\n" in self._head:
                self._timer.cancel()
                self._timer, self._head = None, b""
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self._accepted else None  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._accepted:
            self._accepted = False
            self._uncount()
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._accepted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._accepted:
            self.inner.resume_writing()


def _abort(transport: asyncio.BaseTransport) -> None:
    abort = getattr(transport, "abort", None)
    abort() if abort is not None else transport.close()


class ConnectionGuard:
    """A protocol factory around aiohttp's (``web.Server``): at most ``max_connections`` open
    at once, and ``header_timeout_s`` for a new connection to send its first request's
    headers. A new connection over the cap takes the place of the connection idle the longest
    between requests, or is closed at once when none is idle. Later requests on a kept-alive
    connection are bounded by aiohttp's keep-alive timeout and the gateway's body timeout."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], max_connections: int,
                 header_timeout_s: float,
                 on_cut: Callable[[str], None] = lambda reason: None) -> None:
        self.factory = factory
        self.on_cut = on_cut
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        #: The connections counted in ``open``.
        self.live: set[_Guarded] = set()
        #: Connections closed at once (over the cap), cut for slow headers, and closed while
        #: idle to make room for a new one, since start.
        self.refused = 0
        self.cut = 0
        self.reclaimed = 0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())

    def make_room(self) -> bool:
        """Closes the connection idle the longest between requests, if there is one."""
        idle = [c for c in self.live if c.idle()]
        if not idle:
            return False
        min(idle, key=lambda c: c.last_in).close_idle()
        self.reclaimed += 1
        self.on_cut("idle_closed")
        return True
