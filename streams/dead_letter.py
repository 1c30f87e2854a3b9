"""The dead-letter topic: every refused record, with why and where it came from.

The value is the original bytes (or, for private key material, a redacted re-encoding);
the reason, the error text and the source topic/partition/offset travel as headers, so any
Kafka tool can read them. Sends are awaited before the batch's offsets are acknowledged.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

import faust

from mdmbus.metrics import Metrics
from mdmbus.streams.classify import Rejected

__all__ = ["send_dead_letters", "HEADER_REASON", "HEADER_ERROR", "HEADER_SOURCE_TOPIC",
           "HEADER_SOURCE_PARTITION", "HEADER_SOURCE_OFFSET", "HEADER_REDACTED"]

HEADER_REASON = "mdmbus.reason"
HEADER_ERROR = "mdmbus.error"
HEADER_SOURCE_TOPIC = "mdmbus.source.topic"
HEADER_SOURCE_PARTITION = "mdmbus.source.partition"
HEADER_SOURCE_OFFSET = "mdmbus.source.offset"
HEADER_REDACTED = "mdmbus.redacted"


async def send_dead_letters(topic: faust.TopicT, rejected: Iterable[Rejected],
                            metrics: Metrics) -> int:
    futures = []
    for r in rejected:
        headers = {
            HEADER_REASON: r.reason.encode(),
            HEADER_ERROR: r.error[:1000].encode(),
            HEADER_SOURCE_TOPIC: r.topic.encode(),
            HEADER_SOURCE_PARTITION: str(r.partition).encode(),
            HEADER_SOURCE_OFFSET: str(r.offset).encode(),
            HEADER_REDACTED: b"true" if r.redacted else b"false",
        }
        futures.append(await topic.send(key=r.key, value=r.value, headers=headers))
        metrics.dead_letters.labels(r.topic, r.reason).inc()
    if futures:
        await asyncio.gather(*futures)
    return len(futures)
