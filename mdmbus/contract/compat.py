"""Schema evolution: can a reader schema read what a writer schema wrote? Which field breaks it?

Follows the resolution rules of the Avro specification ("Schema Resolution"), the same rules
fastavro applies when decoding with a writer and a reader schema. The released schemas under
``schemas/avro/released/`` are the writers every current schema must keep reading (backward
compatibility); ``python -m mdmbus.contract compat`` prints each break with its field path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from mdmbus.contract.registry import Registry, expand_references

__all__ = ["Incompatibility", "incompatibilities", "check_released"]

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


@dataclass(frozen=True)
class Incompatibility:
    """One reason the reader cannot read the writer's data, at a dotted field path."""

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path or '<record>'}: {self.message}"


def _type(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    return node if isinstance(node, str) else node["type"]


def _names(node: Mapping[str, Any]) -> set[str]:
    name = node["name"]
    short = name.rpartition(".")[2]
    return {name, short, *node.get("aliases", ())}


def _compare(writer: Any, reader: Any, path: str, out: list[tuple[str, str]],
             seen: set[tuple[int, int]]) -> None:
    if (id(writer), id(reader)) in seen:
        return  # recursive types: this pair is being checked already
    seen.add((id(writer), id(reader)))
    wt, rt = _type(writer), _type(reader)
    if wt == "union":
        for branch in writer:  # every value the writer may have written must be readable
            _compare(branch, reader, path, out, seen)
        return
    if rt == "union":
        trial: list[tuple[str, str]] = []
        for branch in reader:
            trial = []
            _compare(writer, branch, path, trial, set(seen))
            if not trial:
                return
        out.append((path, f"reader union has no branch for writer type {wt!r}"))
        return
    if wt in _PROMOTIONS or wt in ("null", "boolean", "double"):
        if rt != wt and rt not in _PROMOTIONS.get(wt, ()):
            out.append((path, f"writer type {wt!r} cannot be read as {rt!r}"))
        return
    if wt != rt:
        out.append((path, f"writer type {wt!r} cannot be read as {rt!r}"))
        return
    if wt == "array":
        _compare(writer["items"], reader["items"], f"{path}[]", out, seen)
    elif wt == "map":
        _compare(writer["values"], reader["values"], f"{path}{{}}", out, seen)
    elif wt in ("record", "enum", "fixed") and not (_names(writer) & _names(reader)):
        out.append((path, f"named type {writer['name']!r} read as {reader['name']!r}"))
    elif wt == "fixed" and writer["size"] != reader["size"]:
        out.append((path, f"fixed size {writer['size']} read as {reader['size']}"))
    elif wt == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            out.append((path, f"enum symbols {', '.join(missing)} removed and the reader enum "
                              "has no default"))
    elif wt == "record":
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            where = f"{path}.{field['name']}" if path else field["name"]
            match = written.get(field["name"]) or next(
                (written[a] for a in field.get("aliases", ()) if a in written), None)
            if match is not None:
                _compare(match["type"], field["type"], where, out, seen)
            elif "default" not in field:
                out.append((where, "field added without a default"))


def incompatibilities(kind: str, writer: Mapping[str, Any],
                      reader: Mapping[str, Any]) -> list[Incompatibility]:
    """Every reason ``reader`` cannot read data written with ``writer`` (raw JSON schemas)."""
    found: list[tuple[str, str]] = []
    _compare(expand_references(writer), expand_references(reader), "", found, set())
    return [Incompatibility(kind, path, message) for path, message in found]


def check_released(registry: Registry,
                   released: Iterable[tuple[str, Mapping[str, Any]]] | None = None,
                   ) -> list[Incompatibility]:
    """Breaks between each released schema (writer) and its kind's current schema (reader)."""
    problems: list[Incompatibility] = []
    for kind, schema in registry.released if released is None else released:
        problems += incompatibilities(kind, schema, registry.spec(kind).schema)
    return problems
