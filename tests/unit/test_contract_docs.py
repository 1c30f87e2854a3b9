"""docs/contract.md is generated from the schemas and must be kept up to date."""

from __future__ import annotations

import json

from mdmbus.contract import default_registry, from_json
from mdmbus.contract.docs import EXAMPLE_JSON, EXAMPLE_KIND, render
from tests.conftest import REPO_ROOT


def test_checked_in_contract_doc_is_up_to_date() -> None:
    checked_in = (REPO_ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    assert checked_in == render(default_registry()), (
        "docs/contract.md is stale: run `python -m mdmbus.contract docs > docs/contract.md`")


def test_worked_example_hex_decodes_to_the_example() -> None:
    registry = default_registry()
    doc = render(registry)
    hex_lines = doc.split("```\n0000", 1)[1].split("```", 1)[0]
    rows = ("0000" + hex_lines).strip().splitlines()
    value = b"".join(bytes.fromhex(row.split("  ", 1)[1]) for row in rows)
    kind, record = registry.codec.decode(value)
    assert kind == EXAMPLE_KIND
    expected = from_json(registry.spec(kind).expanded, json.loads(json.dumps(EXAMPLE_JSON)))
    assert str(record["envelope"]["tenant_id"]) == expected["envelope"]["tenant_id"]
    assert record["build_version"] == expected["build_version"]


def test_the_python_avro_example_gives_the_worked_examples_bytes(monkeypatch) -> None:
    """The docs' code for the Apache avro package, run as printed (from the checkout, where
    its schemas/avro/ path is), makes exactly mdmbus's bytes; with avro's own fingerprint()
    it would not."""
    import avro.schema

    from mdmbus.contract.docs import PYTHON_AVRO_EXAMPLE
    registry = default_registry()
    assert f"```python\n{PYTHON_AVRO_EXAMPLE.rstrip()}\n```" in render(registry)
    monkeypatch.chdir(REPO_ROOT)
    scope: dict = {}
    exec(compile(PYTHON_AVRO_EXAMPLE, "docs/contract.md", "exec"), scope)
    record = from_json(registry.spec(EXAMPLE_KIND).expanded, EXAMPLE_JSON)
    assert scope["value"] == registry.codec.encode(EXAMPLE_KIND, record)
    assert scope["key"] == registry.key(EXAMPLE_KIND, record)
    naive = avro.schema.parse(json.dumps(scope["schema_json"])).fingerprint()
    assert naive != scope["value"][2:10], "avro's own fingerprint now agrees: simplify the docs"
