"""Decode and validate one message: accepted with its record, rejected with a reason, or a
marker record that carries nothing (see mdmbus.streams.transit).

Never raises: whatever the bytes are, the caller gets a verdict, so one bad record cannot
crash a processor or hold back the valid records next to it. The verdict is the contract's
(mdmbus.contract.verdict), the same the producer and the gateway give.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

from mdmbus.contract import Registry
from mdmbus.contract.retention import Kept, keep, keep_valid, safe_text
from mdmbus.contract.verdict import OVERSIZED, Refused, check_message
from mdmbus.metrics import Metrics
from mdmbus.topics import MARKER_HEADER, TopicKind, parse_topic

__all__ = ["Message", "Accepted", "RefusedMessage", "classify", "classify_all", "as_uuid", "tenant_uuid",
           "is_marker", "MARKER_HEADER"]



class Message(Protocol):
    """What the classifier reads of a Kafka message (aiokafka's ConsumerRecord, a faust
    event's message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(slots=True)
class Accepted:
    kind: str
    record: dict[str, Any]
    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    topic_kind: TopicKind
    region: str | None

    @property
    def tenant_id(self) -> uuid.UUID:
        return tenant_uuid(self.record["envelope"]["tenant_id"])

    def refuse(self, reason: str, error: str, keep_body: bool = True) -> "RefusedMessage":
        """A valid record a rule refused (its tenant in retention, deleted, elsewhere)."""
        env = self.record["envelope"]
        kept = keep_valid(self.value, keep_body)
        return RefusedMessage(reason, error, "", kept.body, False, self.key,
                        self.topic, self.partition, self.offset, self.region, self.tenant_id,
                        as_uuid(env["record_id"]), self.kind, kept)


@dataclass(slots=True)
class RefusedMessage:
    reason: str
    error: str
    path: str
    #: What a dead letter keeps (mdmbus.contract.retention): the original bytes once scanned
    #: whole, a redacted re-encoding, the first KiB of a clean oversized value, or None.
    body: bytes | None
    redacted: bool
    key: bytes | None
    topic: str
    partition: int
    offset: int
    region: str | None
    tenant_id: uuid.UUID | None = None
    record_id: uuid.UUID | None = None
    kind: str | None = None
    #: Why ``body`` is what it is, with the arrived message's length and digest.
    kept: Kept | None = None


def as_uuid(value: Any) -> uuid.UUID:
    """A uuid field's value (text as the codec reads it) as a uuid.UUID."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


@functools.lru_cache(maxsize=65536)
def tenant_uuid(value: str) -> uuid.UUID:
    """A tenant id as a uuid.UUID, cached: a batch holds few tenants and many records, and
    building a uuid.UUID from text costs more than decoding a small record's header."""
    return as_uuid(value)


def is_marker(message: Message) -> bool:
    return message.value is None and any(k == MARKER_HEADER for k, _ in message.headers or ())


def _lenient_uuid(value: Any) -> uuid.UUID | None:
    """Any spelling of a uuid (upper case, braces, ...): a refused record is linked to its
    tenant even when its ids broke the contract, so the tenant's purge finds its body."""
    try:
        return as_uuid(value.decode("ascii") if isinstance(value, bytes) else value)
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None


def _ids(record: Any, key: bytes | None,
         topic_kind: TopicKind) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(tenant, record id) of a refused message where they can be told: from its record, or
    from the key of a tenant-keyed topic."""
    tenant = record_id = None
    if isinstance(record, dict) and isinstance(record.get("envelope"), dict):
        env = record["envelope"]
        tenant, record_id = _lenient_uuid(env.get("tenant_id")), _lenient_uuid(env.get("record_id"))
    if tenant is None and key is not None and topic_kind in (TopicKind.UPLOAD, TopicKind.RELAY,
                                                              TopicKind.TENANT_LIFECYCLE,
                                                              TopicKind.DELETION_REQUESTS,
                                                              TopicKind.DEAD_LETTER):
        tenant = _lenient_uuid(key)
    return tenant, record_id


def classify(registry: Registry, message: Message) -> Accepted | RefusedMessage:
    """The contract's verdict on one message, with where it came from."""
    spec, region = parse_topic(message.topic)
    value, key = message.value, message.key
    verdict = check_message(registry, value, key, spec.contract_kind)
    if not isinstance(verdict, Refused):
        assert value is not None  # check_message refuses a message without a value
        return Accepted(verdict.kind, verdict.record, value, key, message.topic,
                        message.partition, message.offset, spec.kind, region)
    kind, record = verdict.decoded if verdict.decoded is not None else (None, None)
    kept = keep(registry, value, verdict.decoded, verdict.reason == OVERSIZED,
                verdict.reason == "private_key_material")
    tenant, record_id = _ids(record, key, spec.kind)
    return RefusedMessage(verdict.reason, safe_text(verdict.error), safe_text(verdict.path), kept.body,
                    kept.redacted, key, message.topic, message.partition, message.offset, region,
                    tenant, record_id, kind, kept)


def classify_all(registry: Registry, metrics: Metrics, messages: Iterable[Message]
                 ) -> tuple[list[Accepted], list[RefusedMessage], int]:
    """Classifies a batch; returns (accepted, rejected, markers skipped), counting what came
    in, valid and invalid once a batch per label (a labelled increment costs more than
    decoding a small record's header)."""
    accepted: list[Accepted] = []
    rejected: list[RefusedMessage] = []
    markers = 0
    valid: Counter[tuple[str, str]] = Counter()
    invalid: Counter[tuple[str, str]] = Counter()
    for message in messages:
        if is_marker(message):
            markers += 1
            continue
        verdict = classify(registry, message)
        if isinstance(verdict, Accepted):
            valid[(message.topic, verdict.kind)] += 1
            accepted.append(verdict)
        else:
            invalid[(message.topic, verdict.reason)] += 1
            rejected.append(verdict)
    for (topic, kind), n in valid.items():
        metrics.records_in.labels(topic, kind).inc(n)
        metrics.records_valid.labels(topic, kind).inc(n)
    for (topic, reason), n in invalid.items():
        metrics.records_in.labels(topic, "undecodable").inc(n)
        metrics.records_invalid.labels(topic, reason).inc(n)
    return accepted, rejected, markers
