"""The gateway's listening sockets: each new connection is put to the ConnectionGuard's door
(:mod:`mdmbus.services.gateway.guards`) as it is accepted, before asyncio makes anything of it.

A refused connection is closed right there: no transport, no protocol, no callback queued. Through asyncio's own server a refusal cost a transport's set-up and tear-down spread
over three passes of the event loop, and a flood from one address (about 1,000 a second in
``bench.gateway_isolation``) queued hundreds of such callbacks ahead of every other client's:
the gateway's CPU hardly rose, but the other tenants' p99 latency tripled. Here it costs an
``accept()`` and a ``close()``. The client sees what it saw before: the connection made, then
closed before a byte (no reset, which a client could take for a network fault).

An admitted connection is handed to asyncio (``loop.connect_accepted_socket``) with the
guard's door protocol, which starts TLS and then aiohttp, as before.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdmbus.services.gateway.guards import ConnectionGuard, _Door

__all__ = ["Listener", "ACCEPT_BATCH"]

log = logging.getLogger("mdmbus.gateway")

#: Connections accepted in one pass of the event loop before others get their turn (asyncio's
#: server accepts up to its backlog, 100, the same way).
ACCEPT_BATCH = 16
#: Errors of accept() that mean the process (or the system) is out of descriptors or memory:
#: accepting pauses for a second, as asyncio's server does, instead of spinning.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_PAUSE_S = 1.0


class Listener:
    """Listening sockets on (host, port) whose connections go through ``guard``'s door."""

    def __init__(self, guard: "ConnectionGuard", sockets: list[socket.socket]) -> None:
        self.guard = guard
        self.sockets = sockets
        self._loop = asyncio.get_running_loop()
        self._handovers: set[asyncio.Task] = set()
        self._closed = False
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    @classmethod
    async def open(cls, guard: "ConnectionGuard", host: str | None, port: int, *,
                   backlog: int = 100) -> "Listener":
        """Binds every address ``host`` resolves to (all interfaces for None or ""); OSError
        as ``socket.bind`` raises it when one is taken."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            # getaddrinfo answers once per protocol it knows: each address once
            for family, kind, proto, address in dict.fromkeys(
                    (i[0], i[1], i[2], i[4]) for i in infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio: each family its own socket
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(guard, sockets)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                log.warning("the gateway cannot accept connections (%s): pausing %.0f s",
                            exc.strerror, _PAUSE_S)
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(_PAUSE_S, self._resume, sock)
                return
            # An inet or inet6 stream socket (open binds no other): address[0] is the peer's.
            source = self.guard.source_of(str(address[0]))
            if not self.guard.admit(source):
                conn.close()
                continue
            self._start_hand_over(conn, source)

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _start_hand_over(self, conn: socket.socket, source: str) -> None:
        """asyncio takes the admitted connection over, with the guard's door as its protocol.
        The connection stays blocking, as accept() made it, until asyncio takes it (which
        makes it not)."""
        door = self.guard.door(source)
        task = self._loop.create_task(self._loop.connect_accepted_socket(lambda: door,
                                                                         sock=conn))
        self._handovers.add(task)
        task.add_done_callback(functools.partial(self._handed_over, conn, door))

    def _handed_over(self, conn: socket.socket, door: "_Door",
                     task: asyncio.Future) -> None:
        """However the hand-over ended. One that did not end with asyncio holding the
        connection (it failed, or close() cancelled it, even before it began) leaves the
        connection closed and no longer counted: the count is the guard's, not the task's."""
        self._handovers.discard(task)
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            door.abandoned()
            conn.close()
        # An OSError: the client went before asyncio took its connection; anything else is ours.
        if exc is not None and not isinstance(exc, OSError):
            log.error("handing a connection over to asyncio failed", exc_info=exc)

    def close(self) -> None:
        """Stops accepting and closes the listening sockets (open connections stay)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in list(self._handovers):
            task.cancel()

    async def wait_closed(self) -> None:
        """Until the connections being handed over are handed over or dropped."""
        if self._handovers:
            await asyncio.gather(*self._handovers, return_exceptions=True)
