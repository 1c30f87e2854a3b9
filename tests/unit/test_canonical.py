"""Parsing Canonical Form and CRC-64-AVRO against the Avro project's own test vectors."""

from __future__ import annotations

import json
from pathlib import Path

import avro.schema
import pytest

from mdmbus.canonical import crc64_avro, fingerprint64, parsing_canonical_form, to_signed64
from mdmbus.contract import default_registry

DATA = Path(__file__).resolve().parents[1] / "data" / "avro"


def _cases() -> list[dict]:
    """The <<INPUT / <<canonical / <<fingerprint blocks of schema-tests.txt."""
    cases: list[dict] = []
    lines = (DATA / "schema-tests.txt").read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<<INPUT"):
            text = line[len("<<INPUT"):].strip()
            if not text:  # multi-line input, up to a line "INPUT"
                block = []
                i += 1
                while lines[i] != "INPUT":
                    block.append(lines[i])
                    i += 1
                text = "\n".join(block)
            cases.append({"input": text, "id": f"case{len(cases):03d}"})
        elif line.startswith("<<canonical"):
            cases[-1]["canonical"] = line[len("<<canonical"):].strip()
        elif line.startswith("<<fingerprint"):
            cases[-1]["fingerprint"] = int(line[len("<<fingerprint"):].strip())
        i += 1
    return cases


CASES = _cases()


def test_vectors_were_read() -> None:
    assert len(CASES) == 34
    assert sum("fingerprint" in c for c in CASES) == 26


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_canonical_form_and_fingerprint(case: dict) -> None:
    form = parsing_canonical_form(json.loads(case["input"]))
    assert form == case["canonical"]
    if "fingerprint" in case:
        assert to_signed64(crc64_avro(form.encode())) == case["fingerprint"]


def test_crc64_of_empty_input_is_the_seed() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


LOGICAL = {"type": "record", "name": "T", "namespace": "x",
           "fields": [{"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
                      {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}


def test_apache_avro_keeps_logical_primitives_as_objects_unlike_the_spec() -> None:
    """avro 1.12's canonical_form keeps {"type":"string"}; the spec's PRIMITIVES rule says "string".

    This is why mdmbus computes fingerprints itself: a Java, Rust or C# producer follows the
    spec, and a fingerprint from avro 1.12 would not match theirs.
    """
    spec_form = '{"name":"x.T","type":"record","fields":[{"name":"id","type":"string"},' \
                '{"name":"at","type":"long"}]}'
    ours = parsing_canonical_form(LOGICAL)
    theirs = avro.schema.parse(json.dumps(LOGICAL)).canonical_form
    assert ours == spec_form
    assert theirs != spec_form
    assert '{"type":"string"}' in theirs
    # Without logical types the two agree, so the difference is exactly that rule.
    plain = json.loads(json.dumps(LOGICAL))
    for field in plain["fields"]:
        field["type"] = field["type"]["type"]
    assert avro.schema.parse(json.dumps(plain)).canonical_form == ours


def test_mdmbus_schemas_use_logical_types_so_the_difference_matters() -> None:
    for spec in default_registry().kinds.values():
        theirs = avro.schema.parse(json.dumps(dict(spec.schema))).canonical_form
        assert theirs != parsing_canonical_form(spec.schema), spec.kind
        assert fingerprint64(spec.schema).to_bytes(8, "little") == spec.fingerprint
