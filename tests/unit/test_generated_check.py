"""The per-kind generated check of decoded records (mdmbus.contract.generated) against the
closure walk it replaced (mdmbus.contract.content.compile_decoded_check) and the full walk of
mdmbus.contract.rules: the same verdict on the same values, at the edges of its shortcuts
(the length below which no key is looked for, the PEM markers in short text)."""

from __future__ import annotations

import base64

import pytest

from mdmbus.contract import ValidationError, default_registry
from mdmbus.contract.content import compile_decoded_check
from mdmbus.contract.generated import generate_decoded_check
from mdmbus.contract.keys import MIN_KEY_BYTES
from mdmbus.contract.rules import _check
from tests.unit.examples import der, example

REGISTRY = default_registry()


def _verdict(check, value) -> str | None:
    try:
        check(value)
    except ValidationError as exc:
        return exc.reason
    return None


def _three(kind: str):
    expanded = REGISTRY.spec(kind).expanded
    return (generate_decoded_check(expanded, _check, f"check_{kind}"),
            compile_decoded_check(expanded, _check),
            lambda value: _check(expanded, value, ""))


def _decoded(kind: str, record: dict) -> dict:
    codec = REGISTRY.codec
    return codec.decode(codec.encode(kind, record))[1]


@pytest.mark.parametrize("kind", sorted(REGISTRY.kinds))
def test_every_kind_is_generated_and_accepts_its_example(kind: str) -> None:
    generated, closures, full = _three(kind)
    record = _decoded(kind, example(kind))
    assert (generated is None) == (closures is None)
    if generated is not None:
        assert _verdict(generated, record) is None
    assert _verdict(full, record) is None


KEY_B64 = base64.b64encode(der("ec_private_pkcs8")).decode()


@pytest.mark.parametrize("text, reason", [
    ("-----BEGIN PRIVATE KEY-----", "private_key_material"),  # short, armour only
    ("x" * (MIN_KEY_BYTES - 1), None),
    ("x" * MIN_KEY_BYTES, None),
    (KEY_B64, "private_key_material"),  # long enough to be looked into
    ("-----BEGIN CERTIFICATE-----", "certificate_body"),
    ("-----", None),
])
def test_text_at_the_edges_of_the_shortcuts_gets_the_walks_verdict(text: str,
                                                                  reason: str | None) -> None:
    generated, closures, full = _three("U9")
    record = _decoded("U9", example("U9"))
    record["device_name"] = text
    verdicts = {_verdict(check, record) for check in (generated, closures, full)}
    assert verdicts == {reason}, verdicts


def test_a_uuid_not_in_canonical_form_is_refused() -> None:
    generated, closures, full = _three("U9")
    record = _decoded("U9", example("U9"))
    record["envelope"]["record_id"] = record["envelope"]["record_id"].upper()
    assert {_verdict(check, record) for check in (generated, closures, full)} == {
        "schema_mismatch"}


def test_a_record_whose_fields_have_defaults_gets_the_full_check() -> None:
    schema = {"type": "record", "name": "AllDefaults",
              "fields": [{"name": "blob", "type": "bytes", "default": "\u00ff"}]}
    check = generate_decoded_check(schema, _check)
    check({"blob": b"\xff"})
    with pytest.raises(ValidationError):
        check({"blob": "\u00ff"})
