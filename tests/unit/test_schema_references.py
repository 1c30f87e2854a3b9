"""A schema may name a type once and refer to it by name afterwards (Avro named types: record,
error, enum, fixed). The contract's walkers see every reference replaced by its definition
(mdmbus.contract.registry.expand_references), in the namespace rules of the Avro
specification, so a value in a field typed by reference is checked like one typed in place."""

from __future__ import annotations

import copy

from mdmbus.contract.registry import expand_references

STATE = {"type": "enum", "name": "State", "symbols": ["ON", "OFF"]}
HASH = {"type": "fixed", "name": "Hash", "size": 4}
UUID = {"type": "string", "logicalType": "uuid"}

SCHEMA = {
    "type": "record", "name": "Outer", "namespace": "t",
    "fields": [
        {"name": "state", "type": STATE},
        {"name": "short", "type": "State"},
        {"name": "full", "type": "t.State"},
        {"name": "optional", "type": ["null", "State"]},
        {"name": "many", "type": {"type": "array", "items": "State"}},
        {"name": "by_key", "type": {"type": "map", "values": "State"}},
        {"name": "wrapped", "type": {"type": "State"}},
        {"name": "nested", "type": {"type": {"type": "array", "items": "State"}}},
        {"name": "hash", "type": HASH},
        {"name": "hash_again", "type": "Hash"},
        {"name": "id", "type": UUID},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "state", "type": "State"}]}},
        {"name": "inner_again", "type": "t.Inner"},
        {"name": "other", "type": {"type": "record", "name": "Other", "namespace": "u",
                                   "fields": [{"name": "x", "type": {
                                       "type": "enum", "name": "X", "symbols": ["Q"]}},
                                       {"name": "y", "type": "X"}]}},
        {"name": "other_x", "type": "u.X"},
        {"name": "deep", "type": {"type": "record", "name": "Deep", "namespace": "com.example",
                                  "fields": [{"name": "s", "type": {
                                      "type": "enum", "name": "S", "symbols": ["Z"]}},
                                      {"name": "leaf", "type": {
                                          "type": "record", "name": "Leaf", "fields": [
                                              {"name": "again", "type": "S"}]}}]}},
        {"name": "deep_again", "type": "com.example.Leaf"},
        {"name": "failure", "type": {"type": "error", "name": "Failure", "fields": []}},
        {"name": "failure_again", "type": "Failure"},
    ],
}


def _types() -> dict:
    return {f["name"]: f["type"] for f in expand_references(SCHEMA)["fields"]}


def test_references_are_replaced_by_their_definitions() -> None:
    types = _types()
    for name in ("state", "short", "full", "wrapped"):
        assert types[name] == STATE, name
    assert types["optional"] == ["null", STATE]
    assert types["many"] == {"type": "array", "items": STATE}
    assert types["by_key"] == {"type": "map", "values": STATE}
    assert types["nested"] == {"type": "array", "items": STATE}
    assert types["hash"] == types["hash_again"] == HASH
    assert types["id"] == UUID
    inner = {"type": "record", "name": "Inner", "fields": [{"name": "state", "type": STATE}]}
    assert types["inner"] == types["inner_again"] == inner
    x = {"type": "enum", "name": "X", "symbols": ["Q"]}
    assert types["other"]["fields"] == [{"name": "x", "type": x}, {"name": "y", "type": x}]
    assert types["other_x"] == x
    s = {"type": "enum", "name": "S", "symbols": ["Z"]}
    assert types["deep"]["fields"][1]["type"]["fields"] == [{"name": "again", "type": s}]
    assert types["deep_again"] == types["deep"]["fields"][1]["type"]
    assert types["failure"] == types["failure_again"] == {"type": "error", "name": "Failure",
                                                          "fields": []}


def test_the_schema_given_is_not_changed() -> None:
    before = copy.deepcopy(SCHEMA)
    expand_references(SCHEMA)
    assert SCHEMA == before

