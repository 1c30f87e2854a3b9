"""Private key material is refused in every text and bytes field of every schema, in every form
(tests/keyforms.py: PKCS#1, PKCS#8 plain and encrypted, SEC 1, PKCS#12, raw DER, PEM, base64
and hex with and without line breaks), by the producer's check (``validate``) and by the verdict
the gateway and the pipeline give (``check_message``); public keys and certificates stay
accepted where the contract allows them.

The fields are enumerated from the schemas (schemas/avro/*.avsc through the registry), every one
of them, in a fixed order: an exemption of one field fails here every run, not by chance.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest

from mdmbus.codec import CodecError
from mdmbus.contract import ValidationError, default_registry, validate
from mdmbus.contract.keys import holds_private_key, private_key_form
from mdmbus.contract.verdict import Refused, check_message
from tests.keyforms import key_forms, public_forms, text_key_forms
from tests.unit.examples import _minimal, example

REGISTRY = default_registry()

#: The fields the contract leaves unread, written out by hand: encrypted or binary content by
#: contract (``"mdmbus": {"opaque": true}``). Any other field that is not checked is a hole.
OPAQUE = {("R4", "package"), ("U4", "encrypted_content"), ("U13", "encrypted_key")}
#: The one field that may carry a public key or certificate, and nothing else.
PUBLIC_ONLY = ("U10", "scep_challenge_encryption_certificate")

Path = tuple[str, ...]


def _fields(node: Any, path: Path) -> Iterator[tuple[Path, str, dict]]:
    """(path, leaf type, field metadata) of every string, bytes and map-key position."""
    if isinstance(node, list):
        for branch in node:
            if branch != "null":
                yield from _fields(branch, path)
        return
    kind = node if isinstance(node, str) else node["type"]
    if kind == "record":
        for field in node["fields"]:
            meta = field.get("mdmbus") or {}
            if meta:
                yield path + (field["name"],), "flagged", meta
            else:
                yield from _fields(field["type"], path + (field["name"],))
    elif kind == "array":
        yield from _fields(node["items"], path + ("[]",))
    elif kind == "map":
        yield path + ("{key}",), "string", {}
        yield from _fields(node["values"], path + ("{}",))
    elif kind in ("string", "bytes"):
        logical = node.get("logicalType") if isinstance(node, dict) else None
        yield path, "uuid" if logical == "uuid" else kind, {}


def _all_fields() -> list[tuple[str, Path, str, dict]]:
    return [(kind, path, leaf, meta) for kind in sorted(REGISTRY.kinds)
            for path, leaf, meta in _fields(REGISTRY.spec(kind).expanded, ())]


ALL_FIELDS = _all_fields()


def _schema_at(node: Any, step: str) -> Any:
    if isinstance(node, list):
        node = next(b for b in node if b != "null")
    if step == "[]":
        return node["items"]
    if step == "{}":
        return node["values"]
    return next(f["type"] for f in node["fields"] if f["name"] == step)


def _put(record: dict, schema: Any, path: Path, value: Any) -> None:
    """Sets ``value`` at ``path``, making the optional records, arrays and maps on the way."""
    parent, node = record, schema
    for i, step in enumerate(path[:-1]):
        child_schema = _schema_at(node, step)
        nxt = path[i + 1]
        if step == "[]":
            if not parent:
                parent.append(_minimal(_inner(child_schema)))
            holder, key = parent, 0
        elif step == "{}":
            if not parent:
                parent["k"] = _minimal(_inner(child_schema))
            holder, key = parent, next(iter(parent))
        else:
            holder, key = parent, step
            if holder[key] is None:
                holder[key] = _minimal(_inner(child_schema))
        if nxt in ("[]", "{}", "{key}") and holder[key] is None:
            holder[key] = [] if nxt == "[]" else {}
        parent, node = holder[key], child_schema
    last = path[-1]
    if last == "[]":
        parent.append(value)
    elif last == "{}":
        parent["k"] = value
    elif last == "{key}":
        parent[value] = _minimal(_inner(_schema_at(node, "{}")))
    else:
        parent[last] = value


def _inner(schema: Any) -> Any:
    if isinstance(schema, list):
        return next(b for b in schema if b != "null")
    return schema


def _planted(kind: str, path: Path, value: Any) -> dict:
    record = copy.deepcopy(example(kind))
    _put(record, REGISTRY.spec(kind).expanded, path, value)
    return record


def _id(field: tuple[str, Path, str, dict]) -> str:
    return f"{field[0]}:{'.'.join(field[1])}"


def test_the_enumeration_reaches_fields_at_every_depth() -> None:
    """Oracle for the walker itself: fields written out from the schemas by hand."""
    names = {(k, ".".join(p)) for k, p, _, _ in ALL_FIELDS}
    for expected in [("U12", "build_version"), ("U7", "user_name"), ("U9", "envelope.kind"),
                     ("R1", "inventory.hardware.{key}"), ("R1", "inventory.hardware.{}"),
                     ("R1", "inventory.software.[].version"),
                     ("U14", "enabled_for.[].machine_name"), ("U4", "icon"),
                     ("R1", "compliance.noncompliant_settings.[]"),
                     ("tenant_onboarded", "country")]:
        assert expected in names
    assert len(REGISTRY.kinds) >= 29  # every kind of schemas/avro, as of this writing
    flagged = {(k, ".".join(p)) for k, p, leaf, meta in ALL_FIELDS if leaf == "flagged"}
    assert flagged == OPAQUE | {PUBLIC_ONLY}


def _refusal(kind: str, record: dict) -> tuple[str | None, str | None]:
    """(reason from validate, reason from check_message); None where accepted."""
    try:
        validate(kind, record, REGISTRY)
        produced = None
    except ValidationError as exc:
        produced = exc.reason
    try:
        value = REGISTRY.codec.encode(kind, record)
    except (CodecError, ValueError, TypeError):
        return produced, "unencodable"
    verdict = check_message(REGISTRY, value, REGISTRY.key(kind, record), None)
    return produced, verdict.reason if isinstance(verdict, Refused) else None


@pytest.mark.parametrize("field", [f for f in ALL_FIELDS if f[2] != "flagged"], ids=_id)
def test_a_private_key_is_refused_in_every_field_in_every_form(field) -> None:
    kind, path, leaf, _ = field
    forms = key_forms() if leaf == "bytes" else text_key_forms()
    expected = "schema_mismatch" if leaf == "uuid" else "private_key_material"
    wrong = []
    for form in forms:
        value = form.data if leaf == "bytes" else form.data.decode("ascii")
        got = _refusal(kind, _planted(kind, path, value))
        if got[0] != expected or got[1] not in (expected, "unencodable"):
            wrong.append((form.name, got))
    assert not wrong, f"{len(wrong)} of {len(forms)} forms not refused: {wrong[:5]}"


@pytest.mark.parametrize("form", key_forms(), ids=lambda f: f.name)
def test_a_private_key_is_refused_in_the_public_key_field(form) -> None:
    kind, name = PUBLIC_ONLY
    record = example(kind)
    record[name] = form.data
    assert _refusal(kind, record) == ("private_key_material", "private_key_material")


@pytest.mark.parametrize("form", [f for f in public_forms()
                                  if f.name.split("/")[1] in ("der",)], ids=lambda f: f.name)
def test_public_keys_and_certificates_stay_accepted_in_the_public_key_field(form) -> None:
    kind, name = PUBLIC_ONLY
    record = example(kind)
    record[name] = form.data
    assert _refusal(kind, record) == (None, None)


@pytest.mark.parametrize("form", public_forms(), ids=lambda f: f.name)
def test_encoded_public_keys_are_not_taken_for_private_ones(form) -> None:
    """Base64 or hex of a public key or certificate in a free-text field is no private key (it
    is not key material the contract forbids there); raw DER in a bytes field neither."""
    assert private_key_form(form.data) is None
    if form.text:
        record = example("U12")
        record["build_version"] = form.data.decode("ascii")
        assert _refusal("U12", record) == (None, None)
    record = example("U4")
    record["icon"] = form.data
    assert _refusal("U4", record) == (None, None)


@pytest.mark.parametrize("form", key_forms(), ids=lambda f: f.name)
def test_every_form_is_recognised_whole_and_cut_short(form) -> None:
    """A message cut short keeps the opening of a key: scanned as a fragment, 32 bytes of it
    (or 64 characters of an encoding) are recognised."""
    assert holds_private_key(form.data)
    assert holds_private_key(form.data[:64], fragment=True)
