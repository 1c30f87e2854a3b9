"""Avro single-object encoding: ``C3 01``, 8-byte CRC-64-AVRO fingerprint (little-endian), body.

The wire format of every mdmbus topic (docs/design.md, docs/contract.md): any Avro library in any language can
read and write it without a schema registry, because the fingerprint names the writer schema.

fastavro does the per-record work; everything else (parsing, fingerprints, picking the reader
schema for each known writer schema) happens once, when a :class:`Codec` is built. The codec
checks that a record fits its schema's *types*; the content rules (minimisation, private keys,
unknown fields) are :func:`mdmbus.contract.validate`'s job, run before encoding and after decoding.

Every failure is a :class:`CodecError` subclass naming its cause; library errors are chained.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any, Iterable, Mapping, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from mdmbus.canonical import fingerprint_bytes
from mdmbus.errors import MdmbusError

__all__ = [
    "MARKER", "HEADER_SIZE", "Codec", "Decoded", "header_of",
    "CodecError", "GarbageError", "WrongMarkerError", "UnknownFingerprintError",
    "TruncatedBodyError", "BodyMismatchError", "RecordMismatchError", "NoSchemaError",
]

#: The two marker bytes of single-object encoding, format version 1.
MARKER = b"\xc3\x01"
#: Marker plus fingerprint: the bytes before the Avro body.
HEADER_SIZE = 10


class CodecError(MdmbusError):
    """A message could not be encoded or decoded; the subclass says why."""


class GarbageError(CodecError):
    """The input is not bytes, or too short to hold the 10-byte header."""


class WrongMarkerError(CodecError):
    """The first two bytes are not C3 01: not single-object encoding (version 1)."""


class UnknownFingerprintError(CodecError):
    """The writer schema's fingerprint is not one this codec knows (current or released)."""

    def __init__(self, message: str, fingerprint: bytes) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class TruncatedBodyError(CodecError):
    """The body ended before the writer schema's record did."""


class BodyMismatchError(CodecError):
    """The body is not a record of the writer schema (bad values, or bytes left over)."""


class RecordMismatchError(CodecError):
    """Encode side: the record does not fit the schema of its kind."""


class NoSchemaError(CodecError):
    """Encode side: no schema is registered for this kind."""


class Decoded(NamedTuple):
    """A decoded message: the kind its writer schema belongs to, and the record."""

    kind: str
    record: dict[str, Any]


@dataclass(frozen=True)
class _Reader:
    kind: str
    writer: Any
    #: None when the writer schema is the current one (no resolution needed).
    reader: Any


def _parse(schema: Mapping[str, Any]) -> Any:
    # A fresh name table per schema: every .avsc is self-contained and defines its own names.
    return parse_schema(dict(schema), named_schemas={})


def _uuid_as_text(node: Any) -> Any:
    """A copy of a raw schema where ``{"type": "string", "logicalType": "uuid"}`` is a plain
    string, for reading. fastavro reads a uuid field with ``uuid.UUID(text)``, which accepts
    upper-case, braced, hyphen-less and ``urn:uuid:`` forms and normalises them; the contract
    allows only the lower-case canonical text, so the text must reach the validator as it was
    written. The fingerprint is unchanged: the canonical form drops logical types."""
    if isinstance(node, list):
        return [_uuid_as_text(branch) for branch in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "string" and node.get("logicalType") == "uuid":
        return "string"
    out = dict(node)
    for key in ("items", "values"):
        if key in out:
            out[key] = _uuid_as_text(out[key])
    if isinstance(out.get("type"), (dict, list)):
        out["type"] = _uuid_as_text(out["type"])
    if "fields" in out:
        out["fields"] = [{**f, "type": _uuid_as_text(f["type"])} for f in out["fields"]]
    return out


def header_of(schema: Mapping[str, Any]) -> bytes:
    """The 10 header bytes of a message written with ``schema`` (raw JSON value)."""
    return MARKER + fingerprint_bytes(schema)


class Codec:
    """Encodes records of known kinds and decodes messages of known writer schemas.

    ``current`` maps each kind to its current schema (the raw JSON value): records are written
    with it and every message of that kind is read into it. ``released`` adds older schemas of a
    kind, so messages their producers wrote still decode, resolved to the current schema.
    """

    __slots__ = ("_writers", "_readers")

    def __init__(self, current: Mapping[str, Mapping[str, Any]],
                 released: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> None:
        writers: dict[str, tuple[bytes, Any]] = {}
        readers: dict[bytes, _Reader] = {}
        current_readers: dict[str, Any] = {}
        for kind, schema in current.items():
            header = header_of(schema)
            # Written with the logical types (a uuid.UUID value is written as its text), read
            # with uuids as the text that was written (see _uuid_as_text).
            writers[kind] = (header, _parse(schema))
            current_readers[kind] = _parse(_uuid_as_text(schema))
            self._add(readers, header[2:], _Reader(kind, current_readers[kind], None))
        for kind, schema in released:
            if kind not in writers:
                raise ValueError(f"released schema for {kind!r} has no current schema")
            fp = fingerprint_bytes(schema)
            if fp in readers:
                continue  # unchanged since release: the current entry reads it directly
            self._add(readers, fp, _Reader(kind, _parse(_uuid_as_text(schema)),
                                           current_readers[kind]))
        self._writers = writers
        self._readers = readers

    @staticmethod
    def _add(readers: dict[bytes, _Reader], fp: bytes, entry: _Reader) -> None:
        other = readers.get(fp)
        if other is not None and other.kind != entry.kind:
            raise ValueError(f"kinds {other.kind!r} and {entry.kind!r} share fingerprint "
                             f"{fp.hex()}: their schemas must differ")
        readers[fp] = entry

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._writers)

    def fingerprint(self, kind: str) -> bytes:
        """The current writer fingerprint of ``kind`` (8 bytes, wire order)."""
        return self._writer(kind)[0][2:]

    def _writer(self, kind: str) -> tuple[bytes, Any]:
        try:
            return self._writers[kind]
        except KeyError:
            raise NoSchemaError(f"no schema for kind {kind!r}") from None
        except TypeError:
            raise NoSchemaError(f"kind must be a string, not {type(kind).__name__}") from None

    def encode(self, kind: str, record: Mapping[str, Any]) -> bytes:
        """One message: header of the kind's current schema, then the Avro body of ``record``."""
        header, schema = self._writer(kind)
        buf = BytesIO()
        buf.write(header)
        try:
            schemaless_writer(buf, schema, record)
        except Exception as exc:  # fastavro raises TypeError/ValueError/AttributeError/...
            raise RecordMismatchError(
                f"{kind} record does not match its schema: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Decoded:
        """The kind and record of one message, resolved to the kind's current schema."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise GarbageError(f"expected bytes, got {type(data).__name__}")
        size = len(data)
        if size < HEADER_SIZE:
            raise GarbageError(f"{size} bytes is shorter than the {HEADER_SIZE}-byte header")
        if data[:2] != MARKER:
            raise WrongMarkerError(
                f"marker is {bytes(data[:2]).hex()}, expected {MARKER.hex()} "
                "(not Avro single-object encoding v1)")
        fp = bytes(data[2:HEADER_SIZE])
        entry = self._readers.get(fp)
        if entry is None:
            raise UnknownFingerprintError(
                f"unknown writer schema fingerprint {fp.hex()} (little-endian CRC-64-AVRO)", fp)
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(buf, entry.writer, entry.reader)
        except EOFError as exc:
            raise TruncatedBodyError(
                f"{entry.kind} body ends early after {size - HEADER_SIZE} bytes: {exc}") from exc
        except Exception as exc:  # bad enum index, bad UTF-8, bad uuid, resolution failure...
            raise BodyMismatchError(
                f"{entry.kind} body does not match its writer schema: "
                f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != size:
            raise BodyMismatchError(
                f"{entry.kind} body has {size - buf.tell()} bytes left over after the record")
        # Every writer schema is a record (Registry loads no other), so the reader's is a dict.
        return Decoded(entry.kind, cast(dict[str, Any], record))
