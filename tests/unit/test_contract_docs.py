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
