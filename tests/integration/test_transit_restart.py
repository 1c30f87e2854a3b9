"""Transit copies across a restart (docs/design.md rule 6): what the pipeline's group committed
before a worker stopped (or before a rebalance gave the partition to another worker) is
truncated by the worker that next owns the partition, even if no new record ever arrives on it.
"""

from __future__ import annotations

import uuid

import pytest

from mdmbus.topics import TopicKind, group_name, spec_of, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, rewind

pytestmark = pytest.mark.integration


async def _readable(work: Workload, topic: str, ids: list[str]) -> set[str]:
    wanted = {i.encode() for i in ids}
    return {w.decode() for m in await work.read_all([topic]) for w in wanted
            if m.value and w in m.value}


async def test_copies_committed_before_a_restart_are_truncated_with_no_new_traffic(stack, tmp_path):
    region = "na"
    topic = topic_name(TopicKind.UPLOAD, region)
    bound = spec_of(TopicKind.UPLOAD).unreadable_s
    procs = launcher(stack, tmp_path, speed=1.0)
    try:
        procs.start("pipeline", region)
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
            tenant = await work.onboarded(region)
            procs.stop()
            # The state a worker leaves when it stops (or loses the partition) after a commit
            # and before its next truncation: offsets committed, copies still readable.
            ids = [(await work.produce("U1", tenant))["envelope"]["record_id"] for _ in range(5)]
            await rewind(stack, group_name("pipeline", region), await work.end_offsets(topic))
            assert await _readable(work, topic, ids) == set(ids)
            procs.start("pipeline", region)  # nothing else is sent to the topic from here on

            async def gone() -> bool:
                procs.assert_alive()
                return not await _readable(work, topic, ids)
            await wait_for(gone, bound + 30, "committed copies truncated after the restart")
    finally:
        procs.stop()
