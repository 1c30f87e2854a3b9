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
from mdmbus.contract import REASONS, Registry, ValidationError, redact, validate_decoded
from mdmbus.metrics import Metrics

__all__ = ["Accepted", "Rejected", "classify", "classify_events", "as_uuid", "CODEC_REASONS",
           "MAX_RECORD_BYTES"]

#: Larger values are refused before decoding (reason "oversized").
MAX_RECORD_BYTES = 512 * 1024

CODEC_REASONS: dict[type, str] = {
    codec.GarbageError: "garbage",
    codec.WrongMarkerError: "wrong_marker",
    codec.UnknownFingerprintError: "unknown_fingerprint",
    codec.TruncatedBodyError: "truncated",
    codec.BodyMismatchError: "body_mismatch",
}


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
             partition: int, offset: int, max_bytes: int) -> Accepted | Rejected:
    def reject(reason: str, error: str, dead_value: bytes | None = None,
               redacted: bool = False) -> Rejected:
        return Rejected(reason, error, value or b"" if dead_value is None else dead_value,
                        redacted, key, topic, partition, offset)

    if value is None:
        return reject("empty", "message has no value (a tombstone is not a record)")
    if len(value) > max_bytes:
        return reject("oversized", f"{len(value)} bytes is over the {max_bytes}-byte limit",
                      dead_value=value[:1024])
    try:
        kind, record = registry.codec.decode(value)
    except codec.CodecError as exc:
        return reject(CODEC_REASONS.get(type(exc), "undecodable"), str(exc))
    try:
        validate_decoded(kind, record, registry)
    except ValidationError as exc:
        reason = exc.reason if exc.reason in REASONS else "invalid"
        if reason == "private_key_material":
            try:
                cleaned = registry.codec.encode(kind, redact(kind, record, registry))
            except codec.CodecError:
                cleaned = b""
            return reject(reason, str(exc), dead_value=cleaned, redacted=True)
        return reject(reason, str(exc))
    spec = registry.spec(kind)
    if spec.topic != topic:
        return reject("wrong_topic", f"{kind} records belong on {spec.topic}, not {topic}")
    return Accepted(kind, record, value, key, topic, partition, offset)


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
        verdict = classify(registry, msg.value, msg.key, msg.topic, msg.partition, msg.offset,
                           MAX_RECORD_BYTES)
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
