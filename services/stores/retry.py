"""Back off and retry while a store cannot be written: the batch is kept, its offsets are not
committed, and the processor resumes where it was once the store answers again."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import asyncpg

__all__ = ["until_written", "STORE_ERRORS", "StoreMisconfigured", "outage", "Backoff"]

T = TypeVar("T")
log = logging.getLogger("mdmbus.store")

#: What a store outage looks like from asyncpg: the server unreachable, shutting down or
#: restarting (class 08 and 57P errors), or a connection that died mid-operation (the
#: interface and internal client errors it leaves behind); and a transaction PostgreSQL
#: aborted to break a lock cycle or a serialization conflict, which succeeds when retried.
STORE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                asyncpg.exceptions.OperatorInterventionError, asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError,
                asyncpg.exceptions.DeadlockDetectedError,
                asyncpg.exceptions.SerializationError)

#: TLS failures that are how a connection dies when its server restarts (an outage), as
#: opposed to the server's certificate no longer being trusted (a fault of configuration).
_TLS_OUTAGES = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class StoreMisconfigured(Exception):
    """A store fault that waiting will not mend: its certificate is not trusted (or ours is
    refused), a file the connection needs is missing or unreadable. Raised with the reason, so
    the process stops and says why instead of retrying forever as "store not writable"."""


def outage(exc: BaseException) -> bool:
    """Whether ``exc`` (one of STORE_ERRORS) is an outage worth waiting out. OSError is in
    STORE_ERRORS because a refused, reset or unresolvable connection is one, and asyncio may
    raise a bare OSError for a connect that failed on every address; TLS and file faults are
    OSErrors too, and are not."""
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, _TLS_OUTAGES)
    return not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


def check_outage(exc: BaseException) -> None:
    """Raises StoreMisconfigured for a fault that is not an outage; returns for one that is."""
    if not outage(exc):
        raise StoreMisconfigured(f"the store cannot be reached as configured: "
                                 f"{type(exc).__name__}: {exc}") from exc


@dataclass
class Backoff:
    """How long to wait before retrying a store: ``start_s``, doubling after each failure up to
    ``max_s``, back to ``start_s`` after a success. The one policy of every store retry (a
    worker's batch, a service opening its pools)."""

    start_s: float = 0.2
    max_s: float = 5.0
    current_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.current_s = self.start_s

    def next(self) -> float:
        """The wait now; the one after it doubles."""
        wait, self.current_s = self.current_s, min(self.current_s * 2, self.max_s)
        return wait

    def reset(self) -> None:
        self.current_s = self.start_s


async def until_written(write: Callable[[], Awaitable[T]], on_error: Callable[[BaseException], None],
                        backoff: Backoff | None = None) -> T:
    backoff = backoff or Backoff()
    while True:
        try:
            return await write()
        except STORE_ERRORS as exc:
            check_outage(exc)
            on_error(exc)
            delay = backoff.next()
            log.warning("store not writable (%s); retrying in %.1f s, offsets held", exc, delay)
            await asyncio.sleep(delay)
