"""Give freed heap back to the operating system, once a minute, in every long-running
process (the pipeline worker's faust timer; ``mdmbus.cli.processes`` for the others).

The processes free megabytes of fetched Kafka data, TLS buffers, request bodies and batch
objects every second; glibc's allocator keeps much of it mapped (fragmented arenas are not
trimmed on free), so resident sets climbed (the pipeline ~0.7 MB/min, the gateway ~4 MB/min)
while the live Python objects stayed flat (tracemalloc; BENCHMARKS.md, memory).
``malloc_trim(0)`` returns those free pages; where the C library has no such call, nothing
is done.
"""

from __future__ import annotations

import ctypes
import asyncio
from typing import Callable

__all__ = ["TRIM_INTERVAL_S", "heap_trimmer", "trim_until"]

TRIM_INTERVAL_S = 60.0


def heap_trimmer() -> Callable[[], bool] | None:
    """``malloc_trim(0)`` of the process's C library, or None where it has none (not glibc).

    The call returns True when memory was given back.
    """
    try:
        # The symbols already loaded into the process (no ldconfig lookup): glibc's, if any.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


async def trim_until(stop: asyncio.Event, interval_s: float = TRIM_INTERVAL_S) -> None:
    """Trims the heap every ``interval_s`` until ``stop`` is set (nothing where there is no
    trim)."""
    trim = heap_trimmer()
    while trim is not None and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except asyncio.TimeoutError:
            trim()
