"""Every shape a schema can give a decoded value, through the three checks of it: the
generated check of the pipeline (mdmbus.contract.generated), the closure walk the benchmarks
compare it with (mdmbus.contract.content.compile_decoded_check) and the full walk of
mdmbus.contract.rules. Each case's verdict is written here by hand, not taken from one of them:
today's schemas have no union of two types, no map of records, no recursive array, so the
per-kind comparisons of tests/unit/test_generated_check.py cannot notice a shape skipped or
checked wrongly; here a key planted in each shape must be refused, and a clean value of each
shape accepted, by all three. The full walk must also name the field."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from mdmbus.contract import ValidationError
from mdmbus.contract.content import compile_decoded_check
from mdmbus.contract.generated import generate_decoded_check
from mdmbus.contract.keys import MIN_KEY_BYTES
from mdmbus.contract.rules import _check
from tests.unit.examples import RECORD_ID, der, pem

KEY_TEXT = pem("PRIVATE KEY", der("ec_private_pkcs8")).decode()
KEY_BYTES = pem("EC PRIVATE KEY", der("ec_private_sec1"))
CERT = pem("CERTIFICATE", der("certificate"))
#: Private key material exactly MIN_KEY_BYTES (48) long, with no PEM marker: the shortest a
#: check may not skip. An Ed25519 PKCS#8 key (the smallest key there is) as raw DER, and the
#: base64 and hex of an RSA PKCS#1 key's opening.
ED25519_DER = bytes.fromhex("302e020100300506032b657004220420") + bytes(range(1, 33))
RSA_B64_48 = base64.b64encode(der("rsa_private_pkcs1")[:36]).decode()
RSA_HEX_48 = der("rsa_private_pkcs1")[:24].hex()
#: PEM armour alone: shorter than MIN_KEY_BYTES, refused for its marker.
ARMOUR = "-----BEGIN PRIVATE KEY-----"
PRIVATE, CERT_BODY, MISMATCH, NOT_PUBLIC = ("private_key_material", "certificate_body",
                                            "schema_mismatch", "not_public_key")
INT_LOW, INT_HIGH = -(2 ** 31), 2 ** 31 - 1
LONG_LOW, LONG_HIGH = -(2 ** 63), 2 ** 63 - 1


def _record(*fields: tuple[str, Any], **meta: dict) -> dict:
    """A top-level record of the given (name, type) fields; ``meta``: name -> "mdmbus" flags."""
    return {"type": "record", "name": "Shape", "fields": [
        {"name": name, "type": kind, **({"mdmbus": meta[name]} if name in meta else {})}
        for name, kind in fields]}


def _tree(container: str) -> dict:
    """A recursive record whose children are an array (or a map) of itself."""
    node: dict = {"type": "record", "name": "Node", "fields": [{"name": "label",
                                                                "type": "string"}]}
    kids = ({"type": "array", "items": node} if container == "array"
            else {"type": "map", "values": node})
    node["fields"].append({"name": "kids", "type": kids})
    return node


UNION = ["string", "long"]
INNER = {"type": "record", "name": "Inner", "fields": [{"name": "s", "type": "string"}]}
SCHEMAS = {
    "union": _record(("u", UNION), ("n", ["null", "string", "long"])),
    "optional": _record(("o", ["null", "string"]), ("r", ["null", INNER])),
    "array": _record(("a", {"type": "array", "items": "string"})),
    "array_of_unions": _record(("a", {"type": "array", "items": UNION})),
    "array_tree": _record(("t", _tree("array"))),
    "map": _record(("m", {"type": "map", "values": "string"})),
    "map_of_booleans": _record(("m", {"type": "map", "values": "boolean"})),
    "map_of_unions": _record(("m", {"type": "map", "values": UNION})),
    "map_of_records": _record(("m", {"type": "map", "values": INNER})),
    "map_tree": _record(("t", _tree("map"))),
    "bytes": _record(("b", "bytes")),
    "int": _record(("i", "int")),
    "long": _record(("i", "long")),
    "uuid": _record(("id", {"type": "string", "logicalType": "uuid"})),
    "opaque_first": _record(("blob", "bytes"), ("after", "string"),
                            blob={"opaque": True}),
    "public_key_first": _record(("cert", "bytes"), ("after", "string"),
                                cert={"public_key_only": True}),
}

#: (shape, decoded value, reason or None, the field the full walk names)
CASES = [
    ("union", {"u": 5, "n": None}, None, ""),
    ("union", {"u": "plain", "n": 7}, None, ""),
    ("union", {"u": KEY_TEXT, "n": None}, PRIVATE, "u"),
    ("union", {"u": 5, "n": KEY_TEXT}, PRIVATE, "n"),
    ("optional", {"o": None, "r": None}, None, ""),
    ("optional", {"o": "x", "r": {"s": "y"}}, None, ""),
    ("optional", {"o": KEY_TEXT, "r": None}, PRIVATE, "o"),
    ("optional", {"o": None, "r": {"s": KEY_TEXT}}, PRIVATE, "r.s"),
    ("array", {"a": []}, None, ""),
    ("array", {"a": ["x", "y"]}, None, ""),
    ("array", {"a": ["x", KEY_TEXT]}, PRIVATE, "a[1]"),
    ("array", {"a": [CERT.decode()]}, CERT_BODY, "a[0]"),
    ("array", {"a": ["x", ARMOUR]}, PRIVATE, "a[1]"),
    ("array", {"a": [RSA_B64_48]}, PRIVATE, "a[0]"),
    ("array", {"a": [RSA_HEX_48]}, PRIVATE, "a[0]"),
    ("array", {"a": ["x" * MIN_KEY_BYTES, "-----"]}, None, ""),
    ("array_of_unions", {"a": [5, "x"]}, None, ""),
    ("array_of_unions", {"a": [5, KEY_TEXT]}, PRIVATE, "a[1]"),
    ("array_tree", {"t": {"label": "a", "kids": [{"label": "b", "kids": []}]}}, None, ""),
    ("array_tree", {"t": {"label": "a", "kids": [{"label": KEY_TEXT, "kids": []}]}}, PRIVATE,
     "t.kids[0].label"),
    ("map", {"m": {}}, None, ""),
    ("map", {"m": {"k": "v"}}, None, ""),
    ("map", {"m": {"k": KEY_TEXT}}, PRIVATE, "m['k']"),
    ("map", {"m": {KEY_TEXT: "v"}}, PRIVATE, "m"),
    ("map", {"m": {ARMOUR: "v"}}, PRIVATE, "m"),
    ("map", {"m": {RSA_B64_48: "v"}}, PRIVATE, "m"),
    ("map", {"m": {"k": ARMOUR}}, PRIVATE, "m['k']"),
    ("map_of_booleans", {"m": {"k": True}}, None, ""),
    ("map_of_booleans", {"m": {KEY_TEXT: False}}, PRIVATE, "m"),
    ("map_of_unions", {"m": {"k": 5, "l": "x"}}, None, ""),
    ("map_of_unions", {"m": {"k": 5, "l": KEY_TEXT}}, PRIVATE, "m['l']"),
    ("map_of_records", {"m": {"k": {"s": "x"}}}, None, ""),
    ("map_of_records", {"m": {"k": {"s": KEY_TEXT}}}, PRIVATE, "m['k'].s"),
    ("map_tree", {"t": {"label": "a", "kids": {"b": {"label": "b", "kids": {}}}}}, None, ""),
    ("map_tree", {"t": {"label": "a", "kids": {"b": {"label": KEY_TEXT, "kids": {}}}}},
     PRIVATE, "t.kids['b'].label"),
    ("bytes", {"b": b"x"}, None, ""),
    ("bytes", {"b": KEY_BYTES}, PRIVATE, "b"),
    ("bytes", {"b": CERT}, CERT_BODY, "b"),
    ("bytes", {"b": ARMOUR.encode()}, PRIVATE, "b"),
    ("bytes", {"b": ED25519_DER}, PRIVATE, "b"),
    ("bytes", {"b": RSA_B64_48.encode()}, PRIVATE, "b"),
    ("bytes", {"b": ED25519_DER[:MIN_KEY_BYTES - 1]}, None, ""),
    ("bytes", {"b": b"-----"}, None, ""),
    ("int", {"i": 0}, None, ""),
    ("int", {"i": INT_LOW}, None, ""),
    ("int", {"i": INT_HIGH}, None, ""),
    ("int", {"i": INT_LOW - 1}, MISMATCH, "i"),
    ("int", {"i": INT_HIGH + 1}, MISMATCH, "i"),
    ("long", {"i": LONG_LOW}, None, ""),
    ("long", {"i": LONG_HIGH}, None, ""),
    ("long", {"i": INT_HIGH + 1}, None, ""),
    ("long", {"i": LONG_LOW - 1}, MISMATCH, "i"),
    ("long", {"i": LONG_HIGH + 1}, MISMATCH, "i"),
    ("uuid", {"id": RECORD_ID}, None, ""),
    ("uuid", {"id": RECORD_ID.upper()}, MISMATCH, "id"),
    ("opaque_first", {"blob": KEY_BYTES, "after": "x"}, None, ""),
    ("opaque_first", {"blob": b"x", "after": KEY_TEXT}, PRIVATE, "after"),
    ("public_key_first", {"cert": CERT, "after": "x"}, None, ""),
    ("public_key_first", {"cert": der("certificate"), "after": "x"}, None, ""),
    ("public_key_first", {"cert": b"neither a key nor a certificate", "after": "x"},
     NOT_PUBLIC, "cert"),
    ("public_key_first", {"cert": KEY_BYTES, "after": "x"}, PRIVATE, "cert"),
    ("public_key_first", {"cert": der("ec_private_pkcs8"), "after": "x"}, PRIVATE, "cert"),
    ("public_key_first", {"cert": CERT, "after": KEY_TEXT}, PRIVATE, "after"),
]


def _outcome(check, value: Any) -> tuple[str | None, str]:
    try:
        check(value)
    except ValidationError as exc:
        return exc.reason, exc.path
    return None, ""


def test_the_edge_values_are_what_the_cases_say() -> None:
    assert len(ED25519_DER) == len(RSA_B64_48) == len(RSA_HEX_48) == MIN_KEY_BYTES
    assert "-----" not in RSA_B64_48 + RSA_HEX_48 and len(ARMOUR) < MIN_KEY_BYTES


@pytest.mark.parametrize("shape, value, reason, path", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_check_gives_the_verdict_written_here(shape: str, value: dict,
                                                   reason: str | None, path: str) -> None:
    schema = SCHEMAS[shape]
    generated = generate_decoded_check(schema, _check)
    closures = compile_decoded_check(schema, _check)
    assert generated is not None and closures is not None, "every shape here has a check"
    assert _outcome(generated, value)[0] == reason, "generated"
    assert _outcome(closures, value)[0] == reason, "closures"
    assert _outcome(lambda v: _check(schema, v, ""), value) == (reason, path), "full walk"


#: The shapes the full walk is needed for: several non-null branches, a recursive type.
NEED_THE_FULL_WALK = {"union", "array_of_unions", "array_tree", "map_of_unions", "map_tree"}


def _no_full_walk(schema: Any, value: Any, path: str) -> None:
    raise AssertionError(f"the full walk was called for {schema!r:.80}")


@pytest.mark.parametrize("shape, value, reason, path",
                         [c for c in CASES if c[0] not in NEED_THE_FULL_WALK],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)
                              if c[0] not in NEED_THE_FULL_WALK])
def test_the_other_shapes_are_checked_without_the_full_walk(shape: str, value: dict,
                                                           reason: str | None,
                                                           path: str) -> None:
    """The pipeline's check of every record is its decoded check alone: handing a shape it
    can check itself to the full walk would give the same verdicts at the full walk's cost
    on every record (nullable fields, records, arrays and maps are in every kind)."""
    schema = SCHEMAS[shape]
    for build in (generate_decoded_check, compile_decoded_check):
        assert _outcome(build(schema, _no_full_walk), value)[0] == reason, build.__name__


@pytest.mark.parametrize("shape", sorted(SCHEMAS))
def test_every_shape_has_a_case_accepted_and_a_case_refused(shape: str) -> None:
    """So no shape above is only ever accepted (a check that does nothing would pass)."""
    reasons = {reason for case_shape, _, reason, _ in CASES if case_shape == shape}
    assert None in reasons and reasons - {None}, reasons


@pytest.mark.parametrize("schema", [
    "boolean", "null", "float", "double",
    {"type": "enum", "name": "E", "symbols": ["A"]},
    {"type": "fixed", "name": "F", "size": 2},
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "array", "items": "boolean"},
    ["null", "double"],
    _record(("flag", "boolean"), ("blob", "bytes"), blob={"opaque": True}),
], ids=repr)
def test_what_decoding_guarantees_needs_no_check(schema: Any) -> None:
    """Types with nothing left to check after decoding get no check at all (the pipeline's
    hot path skips them); the full walk would accept any decoded value of them."""
    assert generate_decoded_check(schema, _check) is None
    assert compile_decoded_check(schema, _check) is None


PRODUCED = _record(("i", "int"), ("t", {"type": "long", "logicalType": "timestamp-millis"}),
                   ("id", {"type": "string", "logicalType": "uuid"}))
AWARE = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, reason, path", [
    ({"i": 1, "t": 1_714_521_600_000, "id": RECORD_ID}, None, ""),
    ({"i": 1, "t": AWARE, "id": uuid.UUID(RECORD_ID)}, None, ""),
    ({"i": AWARE, "t": 1, "id": RECORD_ID}, MISMATCH, "i"),
    ({"i": 1, "t": datetime(2024, 5, 1), "id": RECORD_ID}, MISMATCH, "t"),
    ({"i": 1, "t": True, "id": RECORD_ID}, MISMATCH, "t"),
    ({"i": 1, "t": 1, "id": RECORD_ID.replace("-", "")}, MISMATCH, "id"),
])
def test_the_full_walk_takes_a_producers_forms_only_where_they_belong(value: dict,
                                                                      reason: str | None,
                                                                      path: str) -> None:
    """What a producer may hand the codec besides decoded forms: an aware datetime for a
    timestamp (not for a plain int), a uuid.UUID for a uuid."""
    assert _outcome(lambda v: _check(PRODUCED, v, ""), value) == (reason, path)
