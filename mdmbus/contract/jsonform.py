"""The JSON form of records, for producers that speak JSON (``mdmbus produce``) and for docs.

A record in JSON is the Avro record with three conventions (documented in docs/contract.md):

- uuids are strings (lower-case canonical form);
- timestamps (``timestamp-millis``) are ISO-8601 strings with a time zone
  (``"2024-05-01T12:00:00.250Z"``) or integers of epoch milliseconds;
- bytes are base64 strings (RFC 4648, standard alphabet, padded);
- an optional field (``["null", T]``) is ``null`` or the plain value: no Avro JSON union wrapper.

Conversion only changes representations; it keeps unknown fields and wrong types as they are so
that :func:`mdmbus.contract.validate` reports them with the contract's reason codes.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from mdmbus.contract.errors import SchemaMismatchError

__all__ = ["from_json", "to_json"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _millis(value: str, path: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SchemaMismatchError(f"{value!r:.40} is not an ISO-8601 timestamp", path) from None
    if moment.tzinfo is None:
        raise SchemaMismatchError(f"timestamp {value!r:.40} has no time zone", path)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _bytes(value: str, path: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaMismatchError("is not standard base64", path) from None


def _branch(schema: Any) -> Any:
    if isinstance(schema, list):
        rest = [b for b in schema if b != "null"]
        return rest[0] if len(rest) == 1 else None
    return schema


def from_json(schema: Any, value: Any, path: str = "") -> Any:
    """The record (codec representation) for a JSON value of an expanded schema node."""
    schema = _branch(schema)
    if value is None or schema is None:
        return value
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record" and isinstance(value, Mapping):
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: from_json(fields[k], v, f"{path}.{k}" if path else k) if k in fields else v
                for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [from_json(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, Mapping):
        return {k: from_json(schema["values"], v, f"{path}[{k!r}]") for k, v in value.items()}
    if kind == "bytes" and isinstance(value, str):
        return _bytes(value, path)
    logical = schema.get("logicalType") if isinstance(schema, Mapping) else None
    if logical == "timestamp-millis" and isinstance(value, str):
        return _millis(value, path)
    return value


def to_json(schema: Any, value: Any) -> Any:
    """The JSON value of a record (as given to or returned by the codec)."""
    schema = _branch(schema)
    if value is None or schema is None:
        return value
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record":
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: to_json(fields.get(k), v) for k, v in value.items()}
    if kind == "array":
        return [to_json(schema["items"], v) for v in value]
    if kind == "map":
        return {k: to_json(schema["values"], v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")
    return value
