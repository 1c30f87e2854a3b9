"""Decode and validate one message: accepted with its record, or rejected with a reason.

Never raises: whatever the bytes are, the caller gets a verdict, so one bad record cannot
crash a processor or hold back the valid records next to it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from mdmbus import codec
from mdmbus.contract import Registry, redact
from mdmbus.contract.verdict import OVERSIZED, Refused, check_message
from mdmbus.metrics import Metrics

__all__ = ["Accepted", "Rejected", "classify", "classify_events", "as_uuid"]


@dataclass(slots=True)
class Accepted:
    kind: str
    record: dict[str, Any]
    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int

    @property
    def tenant_id(self) -> uuid.UUID:
        return as_uuid(self.record["envelope"]["tenant_id"])

    def refuse(self, reason: str, error: str) -> "Rejected":
        """A valid record the stores refused (e.g. its tenant is in retention)."""
        return Rejected(reason, error, self.value, False, self.key, self.topic, self.partition,
                        self.offset)


@dataclass(slots=True)
class Rejected:
    reason: str
    error: str
    #: What goes into the dead letter: the original bytes, or a redacted re-encoding when the
    #: record carried private key material (the secret is stored nowhere).
    value: bytes
    redacted: bool
    key: bytes | None
    topic: str
    partition: int
    offset: int


def classify(registry: Registry, value: bytes | None, key: bytes | None, topic: str,
             partition: int, offset: int) -> Accepted | Rejected:
    """The contract's verdict (mdmbus.contract.verdict) on one message, with where it came from."""
    verdict = check_message(registry, value, key, topic)
    if not isinstance(verdict, Refused):
        return Accepted(verdict.kind, verdict.record, value, key, topic, partition, offset)
    dead_value, redacted = value or b"", False
    if verdict.reason == OVERSIZED:
        dead_value = dead_value[:1024]
    elif verdict.reason == "private_key_material" and verdict.decoded is not None:
        kind, record = verdict.decoded
        try:
            dead_value = registry.codec.encode(kind, redact(kind, record, registry))
        except codec.CodecError:
            dead_value = b""
        redacted = True
    return Rejected(verdict.reason, verdict.error, dead_value, redacted, key, topic, partition,
                    offset)


def as_uuid(value: Any) -> uuid.UUID:
    """The codec returns uuid.UUID for uuid fields; anything else is converted."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def classify_events(registry: Registry, metrics: Metrics,
                    events: Sequence[Any]) -> tuple[list[Accepted], list[Rejected]]:
    """Classifies a batch of faust events, counting what came in, valid and invalid (once a
    batch per label: a labelled increment costs more than decoding a small record's header)."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    valid: Counter[tuple[str, str]] = Counter()
    invalid: Counter[tuple[str, str]] = Counter()
    for event in events:
        msg = event.message
        verdict = classify(registry, msg.value, msg.key, msg.topic, msg.partition, msg.offset)
        if isinstance(verdict, Accepted):
            valid[(msg.topic, verdict.kind)] += 1
            accepted.append(verdict)
        else:
            invalid[(msg.topic, verdict.reason)] += 1
            rejected.append(verdict)
    for (topic, kind), n in valid.items():
        metrics.records_in.labels(topic, kind).inc(n)
        metrics.records_valid.labels(topic, kind).inc(n)
    for (topic, reason), n in invalid.items():
        metrics.records_in.labels(topic, "undecodable").inc(n)
        metrics.records_invalid.labels(topic, reason).inc(n)
    return accepted, rejected
