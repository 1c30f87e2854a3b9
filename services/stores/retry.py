"""Back off and retry while a store cannot be written: the batch is kept, its offsets are not
committed, and the processor resumes where it was once the store answers again."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

import asyncpg

__all__ = ["until_written", "STORE_ERRORS"]

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


async def until_written(write: Callable[[], Awaitable[T]], on_error: Callable[[BaseException], None],
                        max_backoff_s: float = 5.0) -> T:
    delay = 0.2
    while True:
        try:
            return await write()
        except STORE_ERRORS as exc:
            on_error(exc)
            log.warning("store not writable (%s); retrying in %.1f s, offsets held", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
