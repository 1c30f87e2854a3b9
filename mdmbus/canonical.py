"""Avro Parsing Canonical Form and the CRC-64-AVRO fingerprint, written from the specification.

Single-object encoding names the writer schema by the fingerprint of its canonical form, so any
two implementations must agree on it byte for byte. Ours follows the spec's transformation rules
(PRIMITIVES, FULLNAMES, STRIP, ORDER, STRINGS, INTEGERS, WHITESPACE) literally; notably a
primitive carrying a ``logicalType`` becomes the bare primitive name, which the Python ``avro``
package 1.12 does not do (see ``tests/unit/test_canonical.py``).

Computed once per schema at load time; nothing here is on the per-record path.
"""

from __future__ import annotations

import json
from typing import Any

from mdmbus.errors import MdmbusError

__all__ = ["parsing_canonical_form", "crc64_avro", "fingerprint64", "fingerprint_bytes",
           "to_signed64", "CanonicalFormError"]

PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_NAMED = frozenset(("record", "error", "enum", "fixed"))
#: [ORDER]: the only attributes kept ([STRIP]), in the order the spec gives.
_ORDER = ("name", "type", "fields", "symbols", "items", "values", "size")

_CRC64_EMPTY = 0xC15D213AA4D7A795


class CanonicalFormError(MdmbusError):
    """The schema is not a valid Avro schema, so it has no canonical form."""


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _canonical(schema: Any, namespace: str | None, seen: set[str]) -> Any:
    """Transform one schema node into its canonical (plain JSON) shape."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        return _fullname(schema, namespace)  # [FULLNAMES] a reference to a named type
    if isinstance(schema, list):
        return [_canonical(branch, namespace, seen) for branch in schema]
    if not isinstance(schema, dict):
        raise CanonicalFormError(f"not a schema: {schema!r}")
    kind = schema.get("type")
    if isinstance(kind, (dict, list)):
        # {"type": {...}} wraps a schema; only a nested name-bearing object can mean that.
        return _canonical(kind, namespace, seen)
    if kind in PRIMITIVES:
        return kind  # [PRIMITIVES] + [STRIP]: logicalType and every other attribute go
    if kind in ("array", "map"):
        child = "items" if kind == "array" else "values"
        if child not in schema:
            raise CanonicalFormError(f"{kind} schema without {child!r}")
        return {"type": kind, child: _canonical(schema[child], namespace, seen)}
    if kind in _NAMED:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise CanonicalFormError(f"{kind} schema without a name")
        ns = schema.get("namespace", namespace)
        full = _fullname(name, ns)
        if full in seen:
            return full  # already defined: a reference by full name
        seen.add(full)
        inner_ns = full.rpartition(".")[0] or None
        out: dict[str, Any] = {"name": full, "type": "record" if kind == "error" else kind}
        if kind in ("record", "error"):
            out["fields"] = [
                {"name": f["name"], "type": _canonical(f["type"], inner_ns, seen)}
                for f in schema.get("fields", ())
            ]
        elif kind == "enum":
            out["symbols"] = list(schema.get("symbols", ()))
        else:
            out["size"] = int(schema["size"])
        return {key: out[key] for key in _ORDER if key in out}
    if isinstance(kind, str):
        return _fullname(kind, namespace)  # {"type": "some.Named"}
    raise CanonicalFormError(f"unknown schema type {kind!r}")


def parsing_canonical_form(schema: Any) -> str:
    """The Parsing Canonical Form of a schema given as its parsed JSON value (``json.loads``).

    Takes the raw JSON value, not a fastavro-parsed schema (parse_schema adds its own keys).
    """
    # [STRINGS] ensure_ascii=False keeps UTF-8 characters; [INTEGERS] ints print without
    # leading zeros; [WHITESPACE] compact separators.
    return json.dumps(_canonical(schema, None, set()), ensure_ascii=False, separators=(",", ":"))


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (the Rabin fingerprint of the spec) of ``data``, as an unsigned 64-bit int."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint64(schema: Any) -> int:
    """CRC-64-AVRO of the schema's Parsing Canonical Form (unsigned)."""
    return crc64_avro(parsing_canonical_form(schema).encode("utf-8"))


def fingerprint_bytes(schema: Any) -> bytes:
    """The 8 fingerprint bytes as they appear on the wire (little-endian)."""
    return fingerprint64(schema).to_bytes(8, "little")


def to_signed64(value: int) -> int:
    """The signed reading of an unsigned 64-bit value (how Java and the spec tests print it)."""
    return value - (1 << 64) if value >= 1 << 63 else value
