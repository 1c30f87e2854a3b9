"""Content checks on the values of a record, and the subset a decoded record still needs.

A record fastavro has just decoded from its schema already has every field and no other, the
declared types, enum symbols, uuid objects and aware datetimes. What decoding cannot tell is
what the contract forbids inside strings and bytes (minimisation, docs/design.md rule 5) and the
integer ranges. :func:`compile_decoded_check` builds, once per schema, a function that visits
only those places and skips every subtree without one: on the pipeline's hot path that is a
fraction of the full walk in :mod:`mdmbus.contract.rules` (same verdicts; tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mdmbus.contract import errors as e
from mdmbus.contract.limits import is_canonical_uuid
from mdmbus.contract.keys import (PRIVATE, has_certificate_marker, has_private_key_marker,
                                  private_key_form, public_key_problem)

__all__ = ["flag", "scan_text", "check_public_key", "compile_decoded_check", "INT_RANGE",
           "DecodedCheck", "FullCheck"]

INT_RANGE = {"int": (-(1 << 31), (1 << 31) - 1), "long": (-(1 << 63), (1 << 63) - 1)}

#: Raises a violation in a decoded value (without naming where).
DecodedCheck = Callable[[Any], None]
#: The full check of a value against an expanded schema node: (schema, value, path).
FullCheck = Callable[[Any, Any, str], None]


def flag(field: Mapping[str, Any], name: str) -> bool:
    meta = field.get("mdmbus")
    return isinstance(meta, Mapping) and bool(meta.get(name))


def scan_text(value: str | bytes, path: str) -> None:
    """Refuse private key material in any form (PEM, or DER raw, base64 or hex encoded) and
    certificate bodies. A value too short to hold a key costs a length comparison."""
    if has_private_key_marker(value):
        raise e.PrivateKeyMaterialError("holds a PEM private key", path)
    form = private_key_form(value)
    if form is not None:
        raise e.PrivateKeyMaterialError(f"holds private key material ({form})", path)
    if has_certificate_marker(value):
        raise e.CertificateBodyError("holds a certificate body; only the public-key-only field "
                                     "of U10 may carry a certificate", path)


def check_public_key(value: Any, path: str) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise e.SchemaMismatchError(f"expected bytes, got {type(value).__name__}", path)
    problem = public_key_problem(bytes(value))
    if problem == PRIVATE or private_key_form(bytes(value)) is not None:
        raise e.PrivateKeyMaterialError("holds private key material; only a public key or a "
                                        "certificate is allowed", path)
    if problem:
        raise e.NotPublicKeyError("is neither a PEM/DER public key nor a certificate", path)


def compile_decoded_check(schema: Any, fallback: FullCheck,
                          _compiling: frozenset[int] = frozenset()) -> DecodedCheck | None:
    """The check of a decoded value of the expanded ``schema`` node, or None if decoding
    already guarantees everything the contract asks of it. ``fallback`` (the full check) is
    used for the shapes mdmbus schemas do not have (unions of several non-null branches).

    A failing check raises a ValidationError without a path: the caller runs the full check
    to name the field (failures are rare; the fast path is for the records that pass).
    """
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) != 1:
            return lambda value: fallback(schema, value, "")
        inner = compile_decoded_check(branches[0], fallback, _compiling)
        if inner is None:
            return None
        return lambda value: None if value is None else inner(value)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if kind == "record":
        if id(schema) in _compiling:  # a recursive type: the full walk follows it
            return lambda value: fallback(schema, value, "")
        return _record_check(schema, fallback, _compiling | {id(schema)})
    if kind == "array":
        item = compile_decoded_check(schema["items"], fallback, _compiling)
        if item is None:
            return None

        def check_array(value: Any) -> None:
            for v in value:
                item(v)
        return check_array
    if kind == "map":
        values = compile_decoded_check(schema["values"], fallback, _compiling)

        def check_map(value: Any) -> None:
            for key, v in value.items():
                _scan(key)
                if values is not None:
                    values(v)
        return check_map
    if kind == "string":
        return _check_uuid if logical == "uuid" else _scan  # uuids come back as written
    if kind == "bytes":
        return _scan
    if kind in INT_RANGE and not (logical or "").startswith("timestamp"):
        low, high = INT_RANGE[kind]

        def check_int(value: Any) -> None:
            if not low <= value <= high:
                raise e.SchemaMismatchError(f"expected an Avro {kind}, got {value!r:.60}", "")
        return check_int
    return None  # enum, fixed, boolean, null, float, double, timestamps: as decoded


def _scan(value: str | bytes) -> None:
    scan_text(value, "")


def _check_uuid(value: str) -> None:
    if not is_canonical_uuid(value):
        raise e.SchemaMismatchError(f"expected a lower-case canonical uuid, got {value!r:.60}", "")


def _record_check(schema: Mapping[str, Any], fallback: FullCheck,
                  compiling: frozenset[int]) -> DecodedCheck | None:
    if any(field.get("default") is not None for field in schema["fields"]):
        # A field the writer's schema lacks comes back as the reader's JSON default, not as
        # decoded Avro (fastavro returns a bytes default as str, a uuid default as written):
        # decoding guarantees nothing for such a record, so the full walk checks it.
        return lambda value: fallback(schema, value, "")
    checks: list[tuple[str, DecodedCheck]] = []
    for field in schema["fields"]:
        if flag(field, "opaque"):
            continue  # bytes by schema, never looked into
        if flag(field, "public_key_only"):
            check: DecodedCheck | None = lambda value: check_public_key(value, "")  # noqa: E731
        else:
            check = compile_decoded_check(field["type"], fallback, compiling)
        if check is not None:
            checks.append((field["name"], check))
    if not checks:
        return None

    def check_record(value: Any) -> None:
        for name, check in checks:
            check(value[name])
    return check_record
