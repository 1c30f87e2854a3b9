"""Messages that carry a private key in every shape a producer can send, for one record kind:
the key file itself as the message, a record holding the key cut short (after the key, and in
the middle of it), a record with bytes appended, an oversized message with the key in its first
KiB, and a record that breaks the schema before the field holding a key (a non-canonical uuid
in the envelope).

Only the first of these fails before decoding with nothing to decode; the others decode partly
or wholly, which is what made dead letters keep keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mdmbus.contract import default_registry
from mdmbus.contract.limits import MAX_RECORD_BYTES
from tests.keyforms import KeyForm

__all__ = ["Shape", "shapes", "SHAPE_NAMES", "carrier_field"]

SHAPE_NAMES = ("whole_file", "truncated_after_key", "truncated_in_key", "bytes_appended",
               "oversized", "schema_mismatch")


@dataclass(frozen=True)
class Shape:
    name: str
    #: The message value as sent.
    value: bytes
    #: The Kafka key a producer would give it (the record's, where there is one).
    key: bytes | None


def carrier_field(kind: str) -> tuple[str, str]:
    """(top-level field name, "string"|"bytes") of ``kind`` that can hold a key: its first plain
    string or bytes field, else ``envelope.kind`` (every kind has one)."""
    spec = default_registry().spec(kind)
    for field in spec.expanded["fields"]:
        if field.get("mdmbus"):
            continue
        node = field["type"]
        branches = node if isinstance(node, list) else [node]
        for b in branches:
            if b in ("string", "bytes"):
                return field["name"], b
    return "envelope.kind", "string"


def _with_key(kind: str, record: dict[str, Any], data: Any) -> dict[str, Any]:
    record = copy.deepcopy(record)
    name, _ = carrier_field(kind)
    if name == "envelope.kind":
        record["envelope"]["kind"] = data
    else:
        record[name] = data
    return record


def shapes(kind: str, record: dict[str, Any], form: KeyForm) -> list[Shape]:
    """Every shape of ``form`` in a ``kind`` record (``record``: a valid one, codec form)."""
    registry = default_registry()
    _, leaf = carrier_field(kind)
    key = registry.key(kind, record)
    whole = Shape("whole_file", form.data, key)
    if leaf == "string" and not form.text:
        return [whole]  # raw DER is not UTF-8: no string field can carry it
    data: Any = form.data if leaf == "bytes" else form.data.decode("ascii")
    holding = registry.codec.encode(kind, _with_key(kind, record, data))
    start = holding.find(form.data)
    assert 0 < start < 1024, (kind, form.name, start)
    bad = _with_key(kind, record, data)
    bad["envelope"]["record_id"] = bad["envelope"]["record_id"].upper()
    filler = bytes(max(MAX_RECORD_BYTES + 1 - len(holding), 0))
    return [
        whole,
        Shape("truncated_after_key", holding[:-1], key),
        Shape("truncated_in_key", holding[:start + max(len(form.data) // 2, 1)], key),
        Shape("bytes_appended", holding + b"\x00\x01appended", key),
        Shape("oversized", holding + filler, key),
        Shape("schema_mismatch", registry.codec.encode(kind, bad), key),
    ]
