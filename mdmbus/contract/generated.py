"""The check of a decoded record, generated per schema as one straight Python function.

:func:`mdmbus.contract.content.compile_decoded_check` decides what a decoded record still
needs checked (the uuids' canonical form, integer ranges, what strings and bytes may not hold)
and builds it as nested closures: a call, a loop step and a tuple unpacking per field. This
module makes the same decisions and writes them out as the source of one function per
schema, field by field, compiled once; its verdicts are the closures' (the unit tests compare
them with the full walk of :mod:`mdmbus.contract.rules`).

Two shortcuts, both exact:
- a string or bytes value is handed to the content scan only if it could hold what the scan
  looks for: every PEM marker contains ``-----``, and :func:`mdmbus.contract.keys.private_key_form`
  looks into nothing shorter than :data:`~mdmbus.contract.keys.MIN_KEY_BYTES`;
- a canonical uuid is matched by the compiled pattern directly (decoded uuids are text).

Shapes mdmbus schemas do not use on the hot path (unions of several non-null branches,
recursive records, records with defaults, whose decoded values are the reader's JSON
defaults) call the full check, as the closures do.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from mdmbus.contract import errors as e
from mdmbus.contract.content import INT_RANGE, DecodedCheck, FullCheck, check_public_key, flag
from mdmbus.contract.content import scan_text
from mdmbus.contract.keys import MIN_KEY_BYTES
from mdmbus.contract.limits import CANONICAL_UUID

__all__ = ["generate_decoded_check"]


def _bad_uuid(value: Any) -> e.SchemaMismatchError:
    return e.SchemaMismatchError(f"expected a lower-case canonical uuid, got {value!r:.60}", "")


def _bad_int(kind: str, value: Any) -> e.SchemaMismatchError:
    return e.SchemaMismatchError(f"expected an Avro {kind}, got {value!r:.60}", "")


class _Writer:
    def __init__(self, fallback: FullCheck) -> None:
        self.lines: list[str] = []
        self.names = itertools.count()
        self.env: dict[str, Any] = {
            "_uuid": CANONICAL_UUID.match, "_scan": scan_text, "_bad_uuid": _bad_uuid,
            "_bad_int": _bad_int, "_public": check_public_key, "_str": str, "_is": isinstance,
            "_MIN": MIN_KEY_BYTES, "_len": len,
        }
        self.fallback = fallback

    def var(self) -> str:
        return f"v{next(self.names)}"

    def const(self, value: Any) -> str:
        name = f"c{next(self.names)}"
        self.env[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def full(self, schema: Any, value: str, depth: int) -> None:
        self.emit(depth, f"{self.const(self.fallback)}({self.const(schema)}, {value}, '')")

    def node(self, schema: Any, value: str, depth: int, compiling: frozenset[int]) -> None:
        """Statements checking ``value`` (a variable) against ``schema`` as decoded."""
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            if len(branches) != 1:
                self.full(schema, value, depth)
                return
            start = len(self.lines)
            self.emit(depth, f"if {value} is not None:")
            self.node(branches[0], value, depth + 1, compiling)
            if len(self.lines) == start + 1:  # nothing to check in the branch
                self.lines.pop()
            return
        kind = schema if isinstance(schema, str) else schema["type"]
        logical = None if isinstance(schema, str) else schema.get("logicalType")
        if kind == "record":
            if id(schema) in compiling or any(f.get("default") is not None
                                              for f in schema["fields"]):
                self.full(schema, value, depth)
                return
            inner = compiling | {id(schema)}
            for field in schema["fields"]:
                if flag(field, "opaque"):
                    continue
                item = self.var()
                start = len(self.lines)
                self.emit(depth, f"{item} = {value}[{field['name']!r}]")
                if flag(field, "public_key_only"):
                    self.emit(depth, f"_public({item}, '')")
                else:
                    self.node(field["type"], item, depth, inner)
                if len(self.lines) == start + 1:
                    self.lines.pop()
        elif kind == "array":
            item = self.var()
            start = len(self.lines)
            self.emit(depth, f"for {item} in {value}:")
            self.node(schema["items"], item, depth + 1, compiling)
            if len(self.lines) == start + 1:
                self.lines.pop()
        elif kind == "map":
            key, item = self.var(), self.var()
            self.emit(depth, f"for {key}, {item} in {value}.items():")
            self._scan(key, depth + 1, "-----")
            self.node(schema["values"], item, depth + 1, compiling)
        elif kind == "string":
            if logical == "uuid":
                self.emit(depth, f"if not _is({value}, _str) or _uuid({value}) is None:")
                self.emit(depth + 1, f"raise _bad_uuid({value})")
            else:
                self._scan(value, depth, "-----")
        elif kind == "bytes":
            self._scan(value, depth, "b'-----'")
        elif kind in INT_RANGE and not (logical or "").startswith("timestamp"):
            low, high = INT_RANGE[kind]
            self.emit(depth, f"if not {low} <= {value} <= {high}:")
            self.emit(depth + 1, f"raise _bad_int({kind!r}, {value})")
        # enum, fixed, boolean, null, float, double, timestamps: as decoded

    def _scan(self, value: str, depth: int, marker: str) -> None:
        marker = marker if marker.startswith("b'") else repr(marker)
        self.emit(depth, f"if _len({value}) >= _MIN or {marker} in {value}:")
        self.emit(depth + 1, f"_scan({value}, '')")


def generate_decoded_check(schema: Mapping[str, Any] | Any, fallback: FullCheck,
                           name: str = "check") -> DecodedCheck | None:
    """The generated check of a decoded value of the expanded ``schema`` node, or None when
    decoding guarantees everything; ``fallback`` is the full check, for the shapes above."""
    writer = _Writer(fallback)
    writer.node(schema, "record", 1, frozenset())
    if not writer.lines:
        return None
    source = f"def {name}(record):\n" + "\n".join(writer.lines) + "\n"
    namespace = dict(writer.env)
    exec(compile(source, f"<decoded check {name}>", "exec"), namespace)  # noqa: S102
    check = namespace[name]
    check.source = source  # type: ignore[attr-defined]  # for reading what was generated
    return check
