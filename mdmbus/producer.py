"""Producing records into mdmbus from Python: JSON lines in, (topic, key, value) out, then Kafka.

The contract is enforced before anything leaves the process: each line is parsed, converted
from the JSON form (see :mod:`mdmbus.contract.jsonform`), validated and encoded. A bad line
becomes a :class:`RefusedLine` with its line number and reason code, and the good lines still go
through; nothing that breaks the contract is ever sent.

Input format, one record per line (blank lines are skipped)::

    {"kind": "U9", "record": {"envelope": {...}, "device_name": "...", ...}}

Sending is a thin async step over an :class:`aiokafka.AIOKafkaProducer` the caller owns
(``mdmbus produce`` builds one with ``acks="all"`` and idempotence on).
"""

from __future__ import annotations

import asyncio
from mdmbus import jsonlines
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping

from mdmbus.codec import CodecError
from mdmbus.contract.errors import RecordTooLargeError, ValidationError
from mdmbus.contract.limits import oversized
from mdmbus.contract.jsonform import from_json
from mdmbus.contract.registry import Registry, default_registry
from mdmbus.contract.rules import validate

if TYPE_CHECKING:  # aiokafka is only needed by the caller that sends
    from aiokafka import AIOKafkaProducer

__all__ = ["Produced", "RefusedLine", "RefusedByKafka", "KafkaUnreachable", "prepare_record",
           "parse_line", "prepare_lines", "send_all", "INVALID_JSON", "INVALID_LINE",
           "ENCODE_FAILED"]

#: RefusedLine reasons of the line format itself (the others are ValidationError.reason codes).
INVALID_JSON = "invalid_json"
INVALID_LINE = "invalid_line"
ENCODE_FAILED = "encode_failed"


@dataclass(frozen=True)
class Produced:
    """A record ready for Kafka: its key and single-object-encoded value, and where it goes:
    ``topic`` is the topic kind until :meth:`to` names the topic of the tenant's region."""

    line: int
    kind: str
    topic: str
    key: bytes
    value: bytes
    tenant_id: str = ""

    def to(self, region: str | None) -> "Produced":
        """This record addressed to its topic in ``region`` (global topics need none)."""
        from dataclasses import replace

        from mdmbus.topics import topic_name
        return replace(self, topic=topic_name(self.topic, region))


@dataclass(frozen=True)
class RefusedLine:
    """A line that was not produced, and why (``reason`` is a bounded code)."""

    line: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.message}"


def prepare_record(kind: str, record: Mapping[str, Any], registry: Registry | None = None,
                   line: int = 0) -> Produced:
    """Validate and encode one record (codec representation); raises ValidationError/CodecError.

    The checks run in the order of :mod:`mdmbus.contract.verdict`, so a record refused here is
    refused for the same reason by the pipeline: size, then content, then the key (derived
    here, so always right)."""
    registry = registry or default_registry()
    spec = registry.spec(kind)
    try:
        value = registry.codec.encode(kind, record)
    except CodecError:
        validate(kind, record, registry)  # names the field at fault
        raise
    too_big = oversized(len(value))
    if too_big:
        raise RecordTooLargeError(too_big)
    validate(kind, record, registry)
    return Produced(line=line, kind=kind, topic=spec.topic, key=registry.key(kind, record),
                    value=value, tenant_id=str(record["envelope"]["tenant_id"]))


def parse_line(text: str, line: int, registry: Registry | None = None) -> Produced | RefusedLine:
    """One JSON line to a Produced record, or the RefusedLine saying what is wrong with it."""
    registry = registry or default_registry()
    try:
        item = jsonlines.loads(text)
    except jsonlines.TooDeep as exc:
        return RefusedLine(line, exc.reason, str(exc))
    except ValueError as exc:
        return RefusedLine(line, INVALID_JSON, f"not JSON: {exc}")
    if not isinstance(item, dict) or set(item) != {"kind", "record"}:
        return RefusedLine(line, INVALID_LINE,
                         'expected an object with exactly "kind" and "record"')
    kind = item["kind"]
    try:
        spec = registry.spec(kind)
        record = from_json(spec.expanded, item["record"])
        return prepare_record(kind, record, registry, line)
    except ValidationError as exc:
        return RefusedLine(line, exc.reason, str(exc))
    except CodecError as exc:  # validated records encode; this is a last line of defence
        return RefusedLine(line, ENCODE_FAILED, str(exc))


def prepare_lines(lines: Iterable[str], registry: Registry | None = None,
                  ) -> Iterator[Produced | RefusedLine]:
    """Each non-blank line (numbered from 1) as a Produced record or a RefusedLine, in order."""
    registry = registry or default_registry()
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield parse_line(text, number, registry)


@dataclass(frozen=True)
class RefusedByKafka:
    """A record the broker (or the client, before sending) refused for good: the input line,
    and the error's name and text."""

    line: int
    error: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: refused by Kafka ({self.error}): {self.message}"


class KafkaUnreachable(Exception):
    """Kafka could not be reached (or stopped answering) while sending; ``sent`` records were
    acknowledged before."""

    def __init__(self, cause: BaseException, sent: int) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.sent = sent


def _unreachable(exc: BaseException) -> bool:
    """A transient failure of the connection (retried by the client until its timeout) rather
    than a verdict of the broker on this one record."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError
    return isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError)) or \
        bool(getattr(exc, "retriable", False))


async def send_all(producer: "AIOKafkaProducer", items: Iterable[Produced] | AsyncIterable[Produced],
                   window: int = 1000) -> tuple[int, list[RefusedByKafka]]:
    """Sends every record; returns (acknowledged, refused).

    Up to ``window`` sends are in flight at once so the producer can batch. A record the broker
    refuses for good (too large, not authorised, ...) is reported and the others still go; a
    broker that cannot be reached raises :class:`KafkaUnreachable`.
    """
    from aiokafka.errors import KafkaError
    pending: list[tuple[Produced, asyncio.Future[Any]]] = []
    sent = 0
    refused: list[RefusedByKafka] = []

    async def settle() -> None:
        nonlocal sent
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (item, _), result in zip(pending, results):
            if not isinstance(result, BaseException):
                sent += 1
            elif isinstance(result, KafkaError) and not _unreachable(result):
                refused.append(RefusedByKafka(item.line, type(result).__name__, str(result)))
            else:
                raise KafkaUnreachable(result, sent) from result
        pending.clear()

    async def each() -> AsyncIterator[Produced]:
        if hasattr(items, "__aiter__"):
            async for item in items:  # type: ignore[union-attr]
                yield item
        else:
            for item in items:
                yield item

    async for item in each():
        try:
            future = await producer.send(item.topic, value=item.value, key=item.key)
        except KafkaError as exc:
            if _unreachable(exc):
                await settle()
                raise KafkaUnreachable(exc, sent) from exc
            refused.append(RefusedByKafka(item.line, type(exc).__name__, str(exc)))
            continue
        pending.append((item, future))
        if len(pending) >= window:
            await settle()
    await settle()
    return sent, refused
