"""Schema evolution: every current schema reads what its released (v1) version wrote."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings

from mdmbus.codec import Codec
from mdmbus.contract import check_released, default_registry, incompatibilities
from mdmbus.contract.__main__ import main
from mdmbus.contract.registry import SCHEMA_DIR, expand_references
from tests.unit.avro_strategies import records

REGISTRY = default_registry()
RELEASED = list(REGISTRY.released)


def test_every_kind_has_a_released_version() -> None:
    assert {kind for kind, _ in RELEASED} == set(REGISTRY.kinds)
    assert len(list((SCHEMA_DIR / "released" / "v1").glob("*.avsc"))) == len(REGISTRY.kinds)


def test_current_schemas_read_every_released_schema() -> None:
    assert check_released(REGISTRY) == []


@pytest.mark.parametrize("kind, released", RELEASED, ids=[k for k, _ in RELEASED])
def test_data_written_with_the_released_schema_decodes(kind: str, released: dict) -> None:
    """Released-version producers keep working: their messages decode into the current kind."""
    writer = Codec({kind: released})

    @settings(max_examples=15, deadline=None)
    @given(record=records(expand_references(released)))
    def check(record: dict) -> None:
        decoded_kind, _ = REGISTRY.codec.decode(writer.encode(kind, record))
        assert decoded_kind == kind

    check()


def _u9() -> tuple[dict, dict]:
    old = copy.deepcopy(dict(REGISTRY.spec("U9").schema))
    return old, copy.deepcopy(old)


def test_checker_names_a_field_added_without_default() -> None:
    old, new = _u9()
    new["fields"].append({"name": "serial", "type": "string", "doc": "x"})
    problems = incompatibilities("U9", old, new)
    assert [(p.path, p.message) for p in problems] == [("serial", "field added without a default")]
    new["fields"][-1]["default"] = ""
    assert incompatibilities("U9", old, new) == []


def test_checker_names_a_changed_type_and_a_removed_enum_symbol() -> None:
    old, new = _u9()
    fields = {f["name"]: f for f in new["fields"]}
    fields["device_name"]["type"] = "long"
    fields["action"]["type"]["symbols"].remove("CONNECT")
    envelope = fields["envelope"]["type"]
    envelope["fields"][1]["type"] = "int"
    found = {str(p) for p in incompatibilities("U9", old, new)}
    assert found == {
        "U9: device_name: writer type 'string' cannot be read as 'long'",
        "U9: action: enum symbols CONNECT removed and the reader enum has no default",
        "U9: envelope.tenant_id: writer type 'string' cannot be read as 'int'",
    }


def test_checker_accepts_promotions_optional_additions_and_removals() -> None:
    old, new = _u9()
    new["fields"] = [f for f in new["fields"] if f["name"] != "friendly_name"]  # removed
    new["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "x"})
    fields = {f["name"]: f for f in new["fields"]}
    fields["device_type"]["type"]["symbols"].append("CHROMEOS")  # added symbol
    assert incompatibilities("U9", old, new) == []
    narrowed = copy.deepcopy(old)
    {f["name"]: f for f in narrowed["fields"]}["primary_user_id"]["type"] = {
        "type": "string", "logicalType": "uuid"}  # optional -> required breaks reading nulls
    assert [p.path for p in incompatibilities("U9", old, narrowed)] == ["primary_user_id"]


def test_command_line_checker(tmp_path, capsys) -> None:
    old, new = _u9()
    new["fields"].append({"name": "serial", "type": "string", "doc": "x"})
    (tmp_path / "old.avsc").write_text(json.dumps(old))
    (tmp_path / "new.avsc").write_text(json.dumps(new))
    assert main(["compat", str(tmp_path / "old.avsc"), str(tmp_path / "new.avsc")]) == 1
    assert "serial: field added without a default" in capsys.readouterr().out
    assert main(["compat"]) == 0
