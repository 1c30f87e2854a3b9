"""Loading a schema directory (mdmbus.contract.load_registry): every way a directory can be
broken is refused with a ContractError naming the file and the problem, and released schema
versions are read oldest first and stay decodable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mdmbus.codec import Codec
from mdmbus.contract import SCHEMA_DIR, ContractError, load_registry
from tests.unit.examples import example

U12 = "u12_connector_version.avsc"


def _directory(tmp_path: Path, *names: str) -> Path:
    (tmp_path / "_envelope.avsc").write_text((SCHEMA_DIR / "_envelope.avsc").read_text())
    for name in names:
        shutil.copy(SCHEMA_DIR / name, tmp_path / name)
    return tmp_path


def _u12() -> dict:
    return json.loads((SCHEMA_DIR / U12).read_text())


def _refused(directory: Path) -> str:
    with pytest.raises(ContractError) as caught:
        load_registry(directory)
    return str(caught.value)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "cannot read schema: "),
    ("[1, 2]", "a top-level schema must be a record"),
    ('{"type": "enum", "name": "E", "symbols": []}', "a top-level schema must be a record"),
])
def test_a_file_that_is_not_a_record_schema(tmp_path, content: str, problem: str) -> None:
    (_directory(tmp_path) / "bad.avsc").write_text(content)
    assert _refused(tmp_path).startswith(f"{tmp_path / 'bad.avsc'}: {problem}")


@pytest.mark.parametrize("meta", [None, "U12", {"topic": "upload"}, {"id": "U12"},
                                  {"id": "", "topic": "upload"}])
def test_a_schema_without_its_id_and_topic(tmp_path, meta) -> None:
    schema = _u12()
    schema["mdmbus"] = meta
    (_directory(tmp_path) / U12).write_text(json.dumps(schema))
    assert _refused(tmp_path) == (f"{tmp_path / U12}: missing \"mdmbus\": {{\"id\", \"topic\"}} "
                                  "attribute")


def test_an_unknown_topic_and_ids_that_are_not_envelope_ids(tmp_path) -> None:
    schema = _u12()
    schema["mdmbus"]["topic"] = "nowhere"
    (_directory(tmp_path) / U12).write_text(json.dumps(schema))
    assert _refused(tmp_path) == f"{tmp_path / U12}: unknown topic kind 'nowhere'"
    schema = _u12()
    schema["mdmbus"]["requires"] = ["device_id", "colour"]
    (tmp_path / U12).write_text(json.dumps(schema))
    assert _refused(tmp_path) == f"{tmp_path / U12}: \"requires\" may only name envelope ids"


def test_two_files_of_one_kind(tmp_path) -> None:
    _directory(tmp_path, U12)
    shutil.copy(SCHEMA_DIR / U12, tmp_path / "u12_again.avsc")
    assert _refused(tmp_path) == (f"{tmp_path / U12}: kind 'U12' also in "
                                  f"{tmp_path / 'u12_again.avsc'}")


def test_a_released_schema_needs_a_current_one(tmp_path) -> None:
    _directory(tmp_path, U12)
    (tmp_path / "released" / "v1").mkdir(parents=True)
    released = tmp_path / "released" / "v1" / "u09_enrolled_device.avsc"
    shutil.copy(SCHEMA_DIR / "u09_enrolled_device.avsc", released)
    assert _refused(tmp_path) == f"{released}: released kind 'U9' has no current schema"
    released.write_text(json.dumps({**_u12(), "mdmbus": {}}))
    assert _refused(tmp_path).startswith(f"{released}: missing \"mdmbus\"")


def test_released_versions_are_read_oldest_first_and_stay_decodable(tmp_path) -> None:
    """v2 comes before v10; a message written with a released schema (here, before a field
    was added) is decoded by the current registry."""
    old = _u12()
    versions = {"v10": {**old, "doc": "v10"}, "v2": {**old, "doc": "v2"}, "v9": old}
    current = _u12()
    current["fields"].append({"name": "added", "type": ["null", "string"], "default": None,
                              "doc": "added later"})
    (_directory(tmp_path) / U12).write_text(json.dumps(current))
    for version, schema in versions.items():
        (tmp_path / "released" / version).mkdir(parents=True)
        (tmp_path / "released" / version / U12).write_text(json.dumps(schema))
    registry = load_registry(tmp_path)
    assert [schema.get("doc") for _, schema in registry.released] == [
        "v2", old.get("doc"), "v10"]
    record = example("U12")
    value = Codec({"U12": old}).encode("U12", record)
    decoded = registry.codec.decode(value)
    assert decoded.kind == "U12" and decoded.record["added"] is None


ENVELOPE_PROBLEM = ("the first field must be \"envelope\" with the type of _envelope.avsc "
                    "inlined unchanged")


def _changed_envelope(schema: dict) -> None:
    schema["fields"][0]["type"]["fields"] = schema["fields"][0]["type"]["fields"][:-1]


def _envelope_renamed(schema: dict) -> None:
    schema["fields"][0]["name"] = "header"


def _envelope_second(schema: dict) -> None:
    schema["fields"].reverse()


def _no_fields(schema: dict) -> None:
    schema["fields"] = []


@pytest.mark.parametrize("change", [_changed_envelope, _envelope_renamed, _envelope_second,
                                    _no_fields])
def test_a_schema_without_the_envelope_first_and_unchanged(tmp_path, change) -> None:
    """Each file inlines the envelope (a producer in another language loads one file): a copy
    that drifted from _envelope.avsc, or an envelope under another name or place, is refused."""
    schema = _u12()
    assert len(schema["fields"]) > 1 and schema["fields"][0]["name"] == "envelope"
    change(schema)
    (_directory(tmp_path) / U12).write_text(json.dumps(schema))
    assert _refused(tmp_path) == f"{tmp_path / U12}: {ENVELOPE_PROBLEM}"


def test_a_kind_may_require_every_envelope_id(tmp_path) -> None:
    """The key field and both ids: the most a kind can require (R2 does, on a topic keyed by
    tenant)."""
    schema = _u12()
    schema["mdmbus"]["requires"] = ["device_id", "user_id"]
    (_directory(tmp_path) / U12).write_text(json.dumps(schema))
    spec = load_registry(tmp_path).spec("U12")
    assert (spec.key_field, spec.requires) == ("tenant_id", frozenset({"device_id", "user_id"}))
