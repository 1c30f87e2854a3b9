"""The readers security tests rely on fail when they could not look: ``read_all`` raises when
it did not read every partition to its end (a "nothing readable" check on a partial read would
pass without looking), and ``found_in_logs`` raises when there is no log to search."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from mdmbus.clock import Clock
from mdmbus.topics import TopicKind, topic_name
from tests.integration.harness import IncompleteRead, Workload
from tests.integration.test_deletion import found_in_logs


async def test_read_all_fails_when_it_cannot_read_to_the_end(stack) -> None:
    async with Workload(stack, Clock(1.0, time.time()), seed=uuid.uuid4().int) as work:
        tenant = await work.onboard("eu")
        lifecycle = topic_name(TopicKind.TENANT_LIFECYCLE)
        with pytest.raises(IncompleteRead, match="not read to the end"):
            await work.read_all([lifecycle], timeout_s=0)
        # Positive control: given the time, it reads everything, the new message included.
        read = await work.read_all([lifecycle])
        assert any(m.key == tenant.encode() for m in read)


def test_found_in_logs_fails_without_a_log_to_search(tmp_path: Path) -> None:
    system = SimpleNamespace(log_dir=tmp_path)
    with pytest.raises(AssertionError, match="no process log"):
        found_in_logs(system, ["anything"])
    (tmp_path / "pipeline-eu.log").write_text("")
    with pytest.raises(AssertionError, match="no process log"):
        found_in_logs(system, ["anything"])
    (tmp_path / "pipeline-eu.log").write_text("stored CANARY-123 by mistake\n")
    assert found_in_logs(system, ["CANARY-123", "absent"]) == ["pipeline-eu.log: CANARY-123"]
