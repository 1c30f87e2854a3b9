"""The schema files themselves: coverage of docs/design.md section 1, docs, envelope, topics, keys."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from mdmbus import topics
from mdmbus.contract import SCHEMA_DIR, default_registry, validate
from mdmbus.contract.errors import ContractError
from mdmbus.contract.registry import ENVELOPE_FILE, load_registry

from tests.unit.examples import example

REGISTRY = default_registry()
CATEGORY_IDS = [f"U{i}" for i in range(1, 15)] + [f"R{i}" for i in range(1, 7)]
KINDS = sorted(REGISTRY.kinds)
TOPIC_OF = {"U": topics.TopicKind.UPLOAD, "R": topics.TopicKind.RELAY}


def _files() -> list[Any]:
    return sorted(p for p in SCHEMA_DIR.glob("*.avsc") if not p.name.startswith("_"))


def test_every_design_id_has_exactly_one_schema() -> None:
    ids = [json.loads(p.read_text())["mdmbus"]["id"] for p in _files()]
    for design_id in CATEGORY_IDS:
        assert ids.count(design_id) == 1, design_id
    assert len(ids) == len(set(ids))


def test_other_categories_exist() -> None:
    expected = {"inventory_cache", "device_session", "device_command", "device_command_result",
                "tenant_onboarded", "tenant_subscription_ended",
                "tenant_subscription_cancelled", "tenant_deletion_requested",
                "device_unenrolled"}
    assert set(KINDS) == set(CATEGORY_IDS) | expected


def _named_and_fields(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, list):
        for branch in node:
            yield from _named_and_fields(branch, where)
    elif isinstance(node, dict):
        if "name" in node:
            yield f"{where} ({node['name']})", node
        for field in node.get("fields", ()):
            yield f"{where}.{field['name']}", field
            yield from _named_and_fields(field["type"], f"{where}.{field['name']}")
        for child in ("items", "values"):
            if child in node:
                yield from _named_and_fields(node[child], where)


@pytest.mark.parametrize("kind", KINDS)
def test_every_schema_type_and_field_has_a_doc(kind: str) -> None:
    spec = REGISTRY.spec(kind)
    assert spec.schema.get("doc", "").strip()
    for where, node in _named_and_fields(dict(spec.schema), kind):
        assert isinstance(node.get("doc"), str) and node["doc"].strip(), where


@pytest.mark.parametrize("kind", CATEGORY_IDS)
def test_data_category_docs_name_their_design_id(kind: str) -> None:
    spec = REGISTRY.spec(kind)
    assert spec.schema["doc"].startswith(f"{kind}:")
    for where, node in _named_and_fields(dict(spec.schema), kind):
        if not where.startswith(f"{kind}.envelope"):
            assert node["doc"].startswith(f"{kind}:"), where


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_is_the_single_source_inlined(kind: str) -> None:
    envelope = json.loads((SCHEMA_DIR / ENVELOPE_FILE).read_text())
    spec = REGISTRY.spec(kind)
    assert spec.schema["fields"][0]["name"] == "envelope"
    assert spec.schema["fields"][0]["type"] == envelope
    assert envelope["name"] == "Envelope" and envelope["namespace"] == "mdmbus"


@pytest.mark.parametrize("kind", KINDS)
def test_topic_key_and_namespace(kind: str) -> None:
    spec = REGISTRY.spec(kind)
    assert spec.name.startswith("mdmbus.")
    assert spec.schema["mdmbus"]["id"] == kind
    if kind in CATEGORY_IDS:
        assert spec.topic == TOPIC_OF[kind[0]]
    expected_key = "device_id" if spec.topic in (topics.TopicKind.DEVICE_SESSIONS,
                                                 topics.TopicKind.DEVICE_COMMANDS) else "tenant_id"
    assert spec.key_field == expected_key == topics.spec_of(spec.topic).key
    if expected_key == "device_id":
        assert "device_id" in spec.requires


def _unions(node: Any) -> Iterator[list]:
    if isinstance(node, list):
        yield node
        for branch in node:
            yield from _unions(branch)
    elif isinstance(node, dict):
        for field in node.get("fields", ()):
            yield from _unions(field["type"])
        for child in ("items", "values", "type"):
            if isinstance(node.get(child), (dict, list)):
                yield from _unions(node[child])


@pytest.mark.parametrize("kind", KINDS)
def test_every_union_is_null_or_one_type_with_null_default(kind: str) -> None:
    """The JSON form relies on it: an optional value is null or the plain value."""
    spec = REGISTRY.spec(kind)
    for union in _unions(dict(spec.schema)):
        assert len(union) == 2 and union[0] == "null", (kind, union)
    for where, node in _named_and_fields(dict(spec.schema), kind):
        if isinstance(node.get("type"), list):
            assert node.get("default", "absent") is None, where


@pytest.mark.parametrize("kind", KINDS)
def test_opaque_fields_are_bytes(kind: str) -> None:
    for where, node in _named_and_fields(dict(REGISTRY.spec(kind).schema), kind):
        meta = node.get("mdmbus") if "fields" not in node else None
        if meta and (meta.get("opaque") or meta.get("public_key_only")):
            assert node["type"] == "bytes", where
            assert "opaque" not in meta or "opaque" in node["doc"].lower(), where


@pytest.mark.parametrize("kind", KINDS)
def test_the_minimal_example_of_every_kind_validates_and_round_trips(kind: str) -> None:
    record = example(kind)
    validate(kind, record)
    decoded_kind, decoded = REGISTRY.codec.decode(REGISTRY.codec.encode(kind, record))
    assert decoded_kind == kind
    validate(kind, decoded)  # the codec's representation (UUID, datetime) validates too


def test_loader_refuses_an_envelope_that_drifted(tmp_path) -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    target = tmp_path / "u12_connector_version.avsc"
    schema = json.loads(target.read_text())
    schema["fields"][0]["type"]["fields"][0]["doc"] = "changed"
    target.write_text(json.dumps(schema))
    with pytest.raises(ContractError, match="u12_connector_version.avsc"):
        load_registry(tmp_path)
