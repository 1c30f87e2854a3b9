"""The contract's checks cover every Avro type, not only those today's schemas use: a schema
with floats, fixed, null, a union of several types, maps, and opaque fields deep in arrays,
maps and optional records is validated, read from bytes and redacted as the rules say. The
schema is loaded the way the repository's are (mdmbus.contract.load_registry)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mdmbus.contract import (REDACTED, SCHEMA_DIR, ValidationError, load_registry, redact,
                             validate)
from mdmbus.contract.retention import keep
from mdmbus.contract.verdict import Refused, check_message
from tests.unit.examples import TENANT, der, example, pem

KEY = pem("EC PRIVATE KEY", der("ec_private_sec1"))
SEALED = {"type": "record", "name": "Sealed", "fields": [
    {"name": "note", "type": "string"},
    {"name": "blob", "type": "bytes", "mdmbus": {"opaque": True}}]}
TREE = {"type": "record", "name": "Tree", "fields": [
    {"name": "label", "type": "string"},
    {"name": "kids", "type": {"type": "array", "items": "Tree"}},
    {"name": "by_name", "type": {"type": "map", "values": "Tree"}}]}
#: No field of the record itself has a default (a record with one is checked by the full walk
#: even when read from bytes); Extra has the fields with defaults.
EXTRA = {"type": "record", "name": "Extra", "fields": [
    {"name": "level", "type": "int", "default": 0},
    {"name": "ratio", "type": "double"},
    {"name": "sealed_maybe", "type": ["null", "Sealed"], "default": None},
    {"name": "sealed_blob", "type": ["null", "bytes"], "mdmbus": {"opaque": True},
     "default": None}]}
FIELDS = [
    {"name": "count", "type": "int"},
    {"name": "ratio", "type": "double"},
    {"name": "score", "type": "float"},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    {"name": "nothing", "type": "null"},
    {"name": "either", "type": ["null", "long", "string"]},
    {"name": "labels", "type": {"type": "map", "values": "string"}},
    {"name": "sealed", "type": {"type": "array", "items": SEALED}},
    {"name": "sealed_by_key", "type": {"type": "map", "values": "Sealed"}},
    {"name": "tree", "type": TREE},
    {"name": "extra", "type": EXTRA},
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    directory: Path = tmp_path_factory.mktemp("schemas")
    (directory / "_envelope.avsc").write_text((SCHEMA_DIR / "_envelope.avsc").read_text())
    schema = json.loads((SCHEMA_DIR / "u12_connector_version.avsc").read_text())
    schema["fields"] += copy.deepcopy(FIELDS)
    (directory / "u12_connector_version.avsc").write_text(json.dumps(schema))
    return load_registry(directory)


def _record(**changes) -> dict:
    record = example("U12")
    record.update(count=1, ratio=1.5, score=2, digest=b"abcd", nothing=None, either=None,
                  labels={}, sealed=[], sealed_by_key={},
                  tree={"label": "root", "kids": [], "by_name": {}},
                  extra={"ratio": 0.5, "sealed_maybe": None, "sealed_blob": None})
    extra = {k[6:]: changes.pop(k) for k in list(changes) if k.startswith("extra_")}
    record["extra"].update(extra)
    record.update(changes)
    return record


def test_a_record_of_every_type_is_valid(registry) -> None:
    validate("U12", _record(), registry)
    for either in (None, 5, "text"):
        validate("U12", _record(either=either, labels={"a": "b"}), registry)
    for blob in (None, b"", b"\x00" + KEY):
        validate("U12", _record(extra_sealed_blob=blob), registry)


def test_a_field_with_a_default_may_be_left_out_and_the_others_are_still_checked(registry) -> None:
    record = _record()
    assert "level" not in record["extra"]  # it has a default
    validate("U12", record, registry)
    record["extra"]["ratio"] = "x"
    with pytest.raises(ValidationError, match="^extra.ratio: expected a number"):
        validate("U12", record, registry)


def test_a_nested_unknown_field_is_named_by_its_record(registry) -> None:
    record = _record(tree={"label": "root", "kids": [], "by_name": {}, "colour": "red"})
    with pytest.raises(ValidationError) as caught:
        validate("U12", record, registry)
    assert (caught.value.reason, caught.value.path, str(caught.value)) == (
        "unknown_field", "tree", "tree: fields not in Tree: colour")


@pytest.mark.parametrize("count", [-(2**31), 2**31 - 1])
def test_the_ends_of_the_int_range_are_accepted_by_producer_and_pipeline(registry, count) -> None:
    record = _record(count=count)
    validate("U12", record, registry)
    value = registry.codec.encode("U12", record)
    assert not isinstance(check_message(registry, value, TENANT.encode(), None), Refused)


def test_the_pipeline_finds_private_keys_deep_in_a_recursive_type(registry) -> None:
    leaf = {"label": KEY.decode(), "kids": [], "by_name": {}}
    for tree, field in (({"label": "r", "kids": [leaf], "by_name": {}}, "tree.kids[0].label"),
                        ({"label": "r", "kids": [], "by_name": {"x": leaf}},
                         "tree.by_name['x'].label")):
        value = registry.codec.encode("U12", _record(tree=tree))
        verdict = check_message(registry, value, TENANT.encode(), None)
        assert isinstance(verdict, Refused)
        assert (verdict.reason, verdict.path) == ("private_key_material", field)


@pytest.mark.parametrize("changes, field, message", [
    ({"ratio": "x"}, "ratio", "expected a number, got 'x'"),
    ({"score": True}, "score", "expected a number, got True"),
    ({"digest": b"abc"}, "digest", "expected 4 bytes"),
    ({"digest": "abcd"}, "digest", "expected 4 bytes"),
    ({"nothing": 1}, "nothing", "expected null, got 1"),
    ({"extra_sealed_blob": "x"}, "extra.sealed_blob", "opaque field expects bytes, got str"),
    ({"either": 1.5}, "either", "matches no branch of the union, got 1.5"),
    ({"labels": {1: "x"}}, "labels", "map key 1 is not a string"),
    ({"labels": {"a": 5}}, "labels['a']", "expected a string, got int"),
])
def test_each_type_refuses_what_it_cannot_hold(registry, changes, field, message) -> None:
    with pytest.raises(ValidationError) as caught:
        validate("U12", _record(**changes), registry)
    assert (caught.value.reason, caught.value.path, str(caught.value)) == (
        "schema_mismatch", field, f"{field}: {message}")


@pytest.mark.parametrize("changes, field", [
    ({"either": KEY.decode()}, "either"),
    ({"labels": {KEY.decode(): "x"}}, "labels"),
    ({"labels": {"a": KEY.decode()}}, "labels['a']"),
])
def test_private_keys_are_found_in_unions_and_maps(registry, changes, field) -> None:
    record = _record(**changes)
    with pytest.raises(ValidationError) as caught:
        validate("U12", record, registry)
    assert (caught.value.reason, caught.value.path) == ("private_key_material", field)
    value = registry.codec.encode("U12", record)
    verdict = check_message(registry, value, TENANT.encode(), None)
    assert isinstance(verdict, Refused)
    assert (verdict.reason, verdict.path) == ("private_key_material", field)


def test_opaque_fields_stay_opaque_at_any_depth(registry) -> None:
    sealed = {"note": "n", "blob": b"\x00" + KEY}
    record = _record(sealed=[sealed], sealed_by_key={"k": sealed}, extra_sealed_maybe=sealed,
                     extra_sealed_blob=b"\x00" + KEY)
    validate("U12", record, registry)
    value = registry.codec.encode("U12", record)
    assert not isinstance(check_message(registry, value, TENANT.encode(), None), Refused)
    clean = redact("U12", record, registry)
    assert clean["sealed"] == [sealed] and clean["sealed_by_key"] == {"k": sealed}
    assert clean["extra"]["sealed_maybe"] == sealed
    assert clean["extra"]["sealed_blob"] == b"\x00" + KEY
    leaky = {"note": KEY.decode(), "blob": b"\x00" + KEY}
    clean = redact("U12", _record(sealed=[leaky], sealed_by_key={"k": leaky},
                                  extra_sealed_maybe=leaky), registry)
    expected = {"note": REDACTED, "blob": leaky["blob"]}
    assert clean["sealed"] == [expected] and clean["sealed_by_key"] == {"k": expected}
    assert clean["extra"]["sealed_maybe"] == expected


def test_a_dead_letter_redacts_by_the_registry_it_is_given(registry) -> None:
    """keep() redacts with the contract of the process (this registry, whose opaque blob the
    repository's U12 lacks): the key in the note is replaced, the opaque blob stays as it came."""
    leaky = {"note": KEY.decode(), "blob": b"\x00" + KEY}
    record = _record(sealed=[leaky])
    value = registry.codec.encode("U12", record)
    expected = registry.codec.encode("U12", _record(sealed=[{"note": REDACTED,
                                                            "blob": b"\x00" + KEY}]))
    kept = keep(registry, value, ("U12", record), key_found=True)
    assert (kept.body, kept.basis, kept.redacted) == (expected, "redacted", True)


def test_redaction_keeps_binary_that_is_not_a_pem_private_key() -> None:
    """Outside U10's public-key field, bytes are judged as validation judges them (by a PEM
    private key header), not by their DER outline: an icon is kept as it is."""
    record = example("U4")
    record["icon"] = bytes([0x30, 0x03, 0x02, 0x01, 0x00])  # happens to parse as DER
    assert redact("U4", record)["icon"] == record["icon"]
    record["icon"] = b"\x89PNG" + KEY
    assert redact("U4", record)["icon"] == REDACTED.encode()


def test_the_pipeline_does_not_trust_a_record_whose_every_field_has_a_default() -> None:
    """A field the writer lacked comes back as the reader's JSON default, not decoded Avro (a
    bytes default is a str): such a record gets the full check even when no field lacks a
    default."""
    from mdmbus.contract.content import compile_decoded_check
    from mdmbus.contract.rules import _check

    schema = {"type": "record", "name": "AllDefaults",
              "fields": [{"name": "blob", "type": "bytes", "default": "\u00ff"}]}
    check = compile_decoded_check(schema, _check)
    check({"blob": b"\xff"})
    with pytest.raises(ValidationError):
        check({"blob": "\u00ff"})
