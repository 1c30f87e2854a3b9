"""Schema evolution (mdmbus.contract.compat): which changes a reader schema can read data of
an older writer through, and, for the others, the field and the reason reported."""

from __future__ import annotations

import pytest

from mdmbus.contract.compat import Incompatibility, check_released, incompatibilities
from mdmbus.contract.registry import expand_references


def _record(*fields: dict, name: str = "R", **extra) -> dict:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def _f(name: str, type_: object, **extra) -> dict:
    return {"name": name, "type": type_, **extra}


def _found(writer: dict, reader: dict) -> list[tuple[str, str]]:
    problems = incompatibilities("K", writer, reader)
    assert all(p.kind == "K" for p in problems)
    return [(p.path, p.message) for p in problems]


@pytest.mark.parametrize("written, read", [
    ("int", "long"), ("int", "double"), ("long", "float"), ("float", "double"),
    ("string", "bytes"), ("bytes", "string"), ("null", "null"), ("boolean", "boolean"),
    ("double", "double"), ("int", ["null", "long"]), (["null", "int"], ["null", "long"]),
    ("string", ["null", "int", "string"]),
])
def test_readable_type_changes(written, read) -> None:
    assert _found(_record(_f("f", written)), _record(_f("f", read))) == []


@pytest.mark.parametrize("written, read, message", [
    ("long", "int", "writer type 'long' cannot be read as 'int'"),
    ("double", "float", "writer type 'double' cannot be read as 'float'"),
    ("boolean", "string", "writer type 'boolean' cannot be read as 'string'"),
    ("null", "string", "writer type 'null' cannot be read as 'string'"),
    (["null", "string"], "string", "writer type 'null' cannot be read as 'string'"),
    ("string", ["null", "int"], "reader union has no branch for writer type 'string'"),
    ({"type": "array", "items": "int"}, "string", "writer type 'array' cannot be read as "
                                                   "'string'"),
])
def test_unreadable_type_changes(written, read, message) -> None:
    assert _found(_record(_f("f", written)), _record(_f("f", read))) == [("f", message)]


def test_a_break_inside_arrays_and_maps_is_named_by_its_place() -> None:
    writer = _record(_f("a", {"type": "array", "items": "long"}),
                     _f("m", {"type": "map", "values": {"type": "array", "items": "string"}}))
    reader = _record(_f("a", {"type": "array", "items": "int"}),
                     _f("m", {"type": "map", "values": {"type": "array", "items": "int"}}))
    assert _found(writer, reader) == [
        ("a[]", "writer type 'long' cannot be read as 'int'"),
        ("m{}[]", "writer type 'string' cannot be read as 'int'")]


def test_named_types_match_by_name_short_name_or_alias() -> None:
    enum = {"type": "enum", "name": "a.State", "symbols": ["ON"]}
    for reader_enum in ({**enum, "name": "b.State"}, {**enum, "name": "Other",
                                                     "aliases": ["a.State"]}):
        assert _found(_record(_f("s", enum)), _record(_f("s", reader_enum))) == []
    assert _found(_record(_f("s", enum)), _record(_f("s", {**enum, "name": "a.Mode"}))) == [
        ("s", "named type 'a.State' read as 'a.Mode'")]
    assert _found(_record(name="A"), _record(name="B")) == [("", "named type 'A' read as 'B'")]
    assert incompatibilities("K", _record(name="A"), _record(name="B")) == [
        Incompatibility("K", "", "named type 'A' read as 'B'")]


def test_fixed_sizes_and_enum_symbols() -> None:
    fixed = {"type": "fixed", "name": "H", "size": 4}
    assert _found(_record(_f("h", fixed)), _record(_f("h", {**fixed, "size": 8}))) == [
        ("h", "fixed size 4 read as 8")]
    assert _found(_record(_f("h", fixed)), _record(_f("h", fixed))) == []
    assert _found(_record(_f("h", fixed)), _record(_f("h", {**fixed, "name": "G"}))) == [
        ("h", "named type 'H' read as 'G'")]
    enum = {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}
    fewer = {**enum, "symbols": ["A"]}
    assert _found(_record(_f("e", enum)), _record(_f("e", fewer))) == [
        ("e", "enum symbols B, C removed and the reader enum has no default")]
    assert _found(_record(_f("e", enum)), _record(_f("e", {**fewer, "default": "A"}))) == []


def test_record_fields_added_removed_and_renamed() -> None:
    writer = _record(_f("old", "int"), _f("inner", _record(_f("x", "int"), name="I")))
    reader = _record(_f("new", "long", aliases=["old"]), _f("added", "int", default=0),
                     _f("inner", _record(_f("x", "int"), _f("y", "int"), name="I")))
    assert _found(writer, reader) == [("inner.y", "field added without a default")]
    reader["fields"][0] = _f("new", "int", aliases=["gone", "old"])
    assert _found(writer, reader) == [("inner.y", "field added without a default")]
    reader["fields"][0] = _f("new", "string", aliases=["old"])
    assert _found(writer, reader)[0] == ("new", "writer type 'int' cannot be read as 'string'")
    assert _found(_record(_f("a", "int")), _record(_f("b", "int", aliases=["c"]))) == [
        ("b", "field added without a default")]


def test_recursive_types_are_compared_once() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        _f("label", "string"), _f("next", ["null", "Node"])]}
    assert _found(node, node) == []
    changed = {**node, "fields": [_f("label", "int"), _f("next", ["null", "Node"])]}
    assert _found(node, changed) == [("label", "writer type 'string' cannot be read as 'int'")]
    assert expand_references(node)  # the cycle the comparison walks


def test_every_released_schema_is_checked_and_named_by_kind() -> None:
    class Registry:  # what check_released reads of a registry
        released = ()

        @staticmethod
        def spec(kind: str):
            return type("Spec", (), {"schema": _record(_f("f", "int"), name=kind)})

    released = [("A", _record(_f("f", "string"), name="A")),
                ("B", _record(_f("f", "long"), name="B"))]
    assert check_released(Registry(), released) == [
        Incompatibility("A", "f", "writer type 'string' cannot be read as 'int'"),
        Incompatibility("B", "f", "writer type 'long' cannot be read as 'int'")]
    assert check_released(Registry()) == []
