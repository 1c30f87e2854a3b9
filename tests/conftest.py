"""Shared fixtures: the settings, the running embedded stack, and factories for test topics.

Integration tests run against the real broker and database that `./run tests` starts (a stack
of its own on other ports); run alone, `pytest` brings that same stack up (idempotently).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Awaitable, Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mdmbus.connections import kafka_options
from mdmbus.identities import ADMIN
from mdmbus.settings import Settings

#: The checkout the tests run from (its docs/, ops/ and examples/ are not package data).
REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The embedded stack, up; `up` is idempotent so this costs nothing when it already runs."""
    from mdmbus import stack as embedded
    embedded.up(settings, say=lambda line: None)
    return settings


@pytest.fixture
async def make_topic(stack: Settings) -> Callable[..., Awaitable[str]]:
    """Creates a uniquely named topic for one test (the broker does not auto-create topics)."""
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()

    async def make(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, partitions, 1)])
        return name

    yield make
    await admin.close()


async def wait_for(check: Callable[[], Awaitable[object]] | Callable[[], object], timeout_s: float,
                   what: str, interval_s: float = 0.1) -> object:
    """Polls a condition until it holds and returns its value; fails naming it at the deadline
    (no blind sleeps)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
