"""Deleting a benchmark's own topics, loudly.

aiokafka's ``AIOKafkaAdminClient.delete_topics`` returns the broker's answer without raising
when the broker refuses (the embedded stack runs with ``delete.topic.enable=false``, so every
deletion is refused with TOPIC_DELETION_DISABLED): a clean-up that trusted it would say it
cleaned up and leave every topic in place. ``delete_topics`` here reads the per-topic error
codes and raises naming each topic that is still there and why.
"""

from __future__ import annotations

from typing import Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

__all__ = ["TopicsNotDeleted", "delete_topics"]


class TopicsNotDeleted(RuntimeError):
    """The broker refused to delete some topics; ``refused`` maps each to its error name."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = refused
        super().__init__("the broker did not delete " + ", ".join(
            f"{topic} ({why})" for topic, why in sorted(refused.items()))
            + ": they are still there; delete them by hand or purge the stack")


#: Codes aiokafka has no class for (for_code gives UnknownError).
_UNNAMED = {73: "TOPIC_DELETION_DISABLED: the broker runs with delete.topic.enable=false"}


def _error_name(code: int) -> str:
    return f"{_UNNAMED.get(code) or for_code(code).__name__}, error {code}"


async def delete_topics(admin: AIOKafkaAdminClient, topics: Iterable[str],
                        timeout_ms: int = 30_000) -> list[str]:
    """Deletes ``topics``; returns them when every one was deleted, raises TopicsNotDeleted
    naming each refusal otherwise."""
    names = sorted(set(topics))
    if not names:
        return []
    response = await admin.delete_topics(names, timeout_ms=timeout_ms)
    refused = {topic: _error_name(code)
               for topic, code, *_ in response.topic_error_codes if code}
    answered = {topic for topic, *_ in response.topic_error_codes}
    refused.update({t: "no answer for it" for t in names if t not in answered})
    if refused:
        raise TopicsNotDeleted(refused)
    return names
