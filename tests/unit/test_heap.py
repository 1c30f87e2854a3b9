"""The worker's heap trim gives freed, fragmented heap back to the operating system."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from mdmbus.heap import heap_trimmer

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="malloc_trim is a glibc call")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@glibc_only
def test_trim_returns_freed_heap_that_free_alone_keeps():
    trim = heap_trimmer()
    assert trim is not None
    trim()
    # 2 KB blocks come from malloc's heap (pymalloc takes only <= 512 bytes); the last one
    # stays alive above the rest, so free() cannot shrink the heap past it.
    blocks = [bytes(2048) for _ in range(100_000)]
    keep = blocks[-1]
    peak = _rss_mb()
    del blocks
    after_free = _rss_mb()
    trim()
    after_trim = _rss_mb()
    assert keep is not None
    assert peak - after_free < 50, "free() alone gave the heap back: the test proves nothing"
    assert after_free - after_trim > 100, (peak, after_free, after_trim)


def test_the_worker_trims_once_a_minute():
    from mdmbus.settings import Settings
    from mdmbus.streams.app import build_app
    from mdmbus.streams.context import PipelineContext
    app = build_app(PipelineContext.create(Settings(kafka_security="plaintext"), ("eu",)))
    names = [getattr(task, "__name__", "") for task in app._app_tasks]
    assert ("give_back_freed_heap" in names) == (heap_trimmer() is not None)


async def test_every_long_running_process_trims_until_it_is_stopped(monkeypatch):
    """mdmbus.cli.processes runs trim_until beside the sweeper, the gateway and the CM
    connector: it trims at each interval and ends as soon as the process is stopped."""
    import asyncio
    import time

    from mdmbus import heap
    calls = []
    monkeypatch.setattr(heap, "heap_trimmer", lambda: lambda: calls.append(1) or True)
    stop = asyncio.Event()
    task = asyncio.create_task(heap.trim_until(stop, interval_s=0.01))
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(calls) >= 3
    stop.set()
    await asyncio.wait_for(task, 5)
