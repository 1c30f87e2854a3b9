"""How long a write waits for a store outage to end (services/stores/retry.py until_written):
0.2 s, doubled after each failure up to 5 s, each wait logged with its cause. asyncio.sleep
is replaced by a recorder (a unit test; the outage itself is tests/integration's)."""

from __future__ import annotations

import asyncio
import logging

from mdmbus.services.stores import retry


def test_the_backoff_doubles_from_a_fifth_of_a_second_to_five_seconds(monkeypatch, caplog):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    failures = [ConnectionRefusedError(f"refused {n}") for n in range(8)]
    errors: list[BaseException] = []

    async def write() -> str:
        if failures:
            raise failures.pop(0)
        return "written"
    with caplog.at_level(logging.WARNING, logger="mdmbus.store"):
        assert asyncio.run(retry.until_written(write, errors.append)) == "written"
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert [str(e) for e in errors] == [f"refused {n}" for n in range(8)]
    assert [r.getMessage() for r in caplog.records][:2] == [
        "store not writable (refused 0); retrying in 0.2 s, offsets held",
        "store not writable (refused 1); retrying in 0.4 s, offsets held"]
