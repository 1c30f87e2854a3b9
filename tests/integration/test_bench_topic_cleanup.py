"""A benchmark's topic clean-up says when the broker refused it: aiokafka's admin client
returns a refusal without raising, so a clean-up that trusted it would delete nothing and
report success."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bench.topics import TopicsNotDeleted, delete_topics
from mdmbus.connections import kafka_options
from mdmbus.identities import ADMIN


async def test_a_refused_topic_deletion_raises_naming_the_topic_and_the_reason(stack, make_topic):
    name = await make_topic("bench-cleanup")
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        # What the helper guards against: the plain client does not raise on a refusal.
        answer = await admin.delete_topics([name])
        codes = {topic: code for topic, code, *_ in answer.topic_error_codes}
        assert codes[name] != 0, "the broker deleted a topic: this stack allows deletion"
        with pytest.raises(TopicsNotDeleted) as refused:
            await delete_topics(admin, [name])
        assert set(refused.value.refused) == {name}
        assert "TOPIC_DELETION_DISABLED" in str(refused.value) and name in str(refused.value)
        assert name in await admin.list_topics()  # nothing was deleted, as it says
    finally:
        await admin.close()
