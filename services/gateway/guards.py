"""What keeps one tenant, or one client, from degrading everybody else's service at a regional
gateway (docs/design.md rule 8, isolation):

- :class:`TenantSlots`: how many requests of one kind one tenant may have in flight; one more
  is answered 429 at once, so a tenant cannot queue up the region's database connections;
- :func:`bounded_acquire`: a database connection is waited for a bounded time, then 503 with
  Retry-After, never an unbounded queue behind a slow neighbour;
- :class:`ConnectionGuard`: a cap on open connections, and a deadline for a new connection's
  first request line and headers (aiohttp has an idle keep-alive timeout but no header
  timeout), so slow or silent clients cannot pile up sockets and buffers.

The export handler adds the last piece itself: it pages through the store and holds no
connection while it writes to the client, and each write has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.guard.open >= self.guard.max_connections:
            self.guard.refused += 1
            self.guard.on_cut("over_cap")
            _abort(transport)
            return
        self.guard.open += 1
        self._accepted = True
        self._timer = asyncio.get_running_loop().call_later(self.guard.header_timeout_s,
                                                            self._too_slow)
        self.inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        self.guard.cut += 1
        self.guard.on_cut("slow_headers")
        if self.transport is not None:
            _abort(self.transport)

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            return
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
        return self.inner.eof_received() if self._accepted else None  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._accepted:
            self._accepted = False
            self.guard.open -= 1
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
    at once (more are closed at once), and ``header_timeout_s`` for a new connection to send
    its first request's headers. Later requests on a kept-alive connection are bounded by
    aiohttp's keep-alive timeout and the gateway's body timeout."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], max_connections: int,
                 header_timeout_s: float,
                 on_cut: Callable[[str], None] = lambda reason: None) -> None:
        self.factory = factory
        self.on_cut = on_cut
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        #: Connections closed at once (over the cap) and cut for slow headers, since start.
        self.refused = 0
        self.cut = 0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())
