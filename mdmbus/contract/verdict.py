"""One verdict for one message: what every reader of mdmbus bytes checks, in one order.

The pipeline's classifier and the gateway call :func:`check_message` on the bytes they receive;
the producer (:mod:`mdmbus.producer`) runs the same checks in the same order on a record before
it encodes and sends it, and a property test holds the two to the same verdict. The order:

1. a value at all [empty], within :data:`~mdmbus.contract.limits.MAX_RECORD_BYTES` [oversized];
2. single-object encoding of a known writer schema [garbage, wrong_marker, unknown_fingerprint,
   truncated, body_mismatch];
3. the content rules of :mod:`mdmbus.contract.rules` [their reason codes];
4. the kind belongs on this topic [wrong_topic];
5. the message key is the one the contract derives from the record [missing_key, wrong_key].
"""

from __future__ import annotations

from dataclasses import dataclass

from mdmbus import codec
from mdmbus.codec import Decoded
from mdmbus.contract.errors import REASONS, RecordTooLargeError, ValidationError
from mdmbus.contract.limits import oversized
from mdmbus.contract.registry import Registry
from mdmbus.contract.rules import validate_decoded

__all__ = ["Refused", "check_message", "key_problem", "MESSAGE_REASONS", "EMPTY", "OVERSIZED",
           "MISSING_KEY", "WRONG_KEY", "WRONG_TOPIC", "CODEC_REASONS"]

EMPTY = "empty"
OVERSIZED = RecordTooLargeError.reason
MISSING_KEY = "missing_key"
WRONG_KEY = "wrong_key"
WRONG_TOPIC = "wrong_topic"

#: The reason of each codec failure.
CODEC_REASONS: dict[type, str] = {
    codec.GarbageError: "garbage",
    codec.WrongMarkerError: "wrong_marker",
    codec.UnknownFingerprintError: "unknown_fingerprint",
    codec.TruncatedBodyError: "truncated",
    codec.BodyMismatchError: "body_mismatch",
}

#: Every reason a message can be refused for by this module (the content rules' included).
MESSAGE_REASONS: frozenset[str] = frozenset(
    {EMPTY, OVERSIZED, MISSING_KEY, WRONG_KEY, WRONG_TOPIC, *CODEC_REASONS.values()} | REASONS)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a message was refused. ``decoded`` is the record when the bytes decoded (a dead
    letter redacts and keeps it), None otherwise; ``path`` names the field when one is at
    fault."""

    reason: str
    error: str
    decoded: Decoded | None = None
    path: str = ""


def key_problem(registry: Registry, kind: str, record: dict, key: bytes | None
                ) -> Refused | None:
    """The refusal of a message ``key`` that is not the key the contract derives from
    ``record`` (its tenant's or device's id as lower-case text), or None."""
    spec = registry.spec(kind)
    expected = registry.key(kind, record)
    if key is None:
        return Refused(MISSING_KEY, f"message has no key; {kind} is keyed by "
                                    f"envelope.{spec.key_field}", Decoded(kind, record))
    if bytes(key) != expected:
        return Refused(WRONG_KEY, f"message key is not envelope.{spec.key_field} as lower-case "
                                  f"text ({len(key)} bytes given)", Decoded(kind, record))
    return None


def check_message(registry: Registry, value: bytes | None, key: bytes | None,
                  topic: str | None) -> Decoded | Refused:
    """The verdict on one message read from ``topic`` (None: any topic, e.g. a gateway upload
    whose topic follows from the kind). Never raises."""
    if value is None:
        return Refused(EMPTY, "message has no value (a tombstone is not a record)")
    too_big = oversized(len(value))
    if too_big:
        return Refused(OVERSIZED, too_big)
    try:
        decoded = registry.codec.decode(value)
    except codec.CodecError as exc:
        return Refused(CODEC_REASONS.get(type(exc), "garbage"), str(exc))
    kind, record = decoded
    try:
        validate_decoded(kind, record, registry)
    except ValidationError as exc:
        reason = exc.reason if exc.reason in REASONS else "invalid"
        return Refused(reason, str(exc), decoded, exc.path)
    spec = registry.spec(kind)
    if topic is not None and spec.topic != topic:
        return Refused(WRONG_TOPIC, f"{kind} records belong on {spec.topic}, not {topic}",
                       decoded)
    return key_problem(registry, kind, record, key) or decoded
