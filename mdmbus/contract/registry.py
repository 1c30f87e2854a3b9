"""Loads the contract, ``schemas/avro/*.avsc``, once: kind -> schema, topic, key; fingerprint -> kind.

Each published .avsc is self-contained (a producer in another language loads one file), so each
inlines the common envelope; ``_envelope.avsc`` is the one source of truth for it and loading
fails if any copy differs. ``released/v<N>/`` holds the schemas as released: their fingerprints
stay decodable (resolved to the current schema) for as long as they are kept there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from mdmbus import topics
from mdmbus.canonical import fingerprint_bytes
from mdmbus.codec import Codec
from mdmbus.contract.errors import ContractError, MissingIdentifierError, UnknownKindError

__all__ = ["SCHEMA_DIR", "ENVELOPE_FILE", "KindSpec", "Registry", "load_registry",
           "default_registry", "expand_references", "uuid_key"]

#: The current schemas, shipped as package data of ``mdmbus.schemas`` (``schemas/avro/`` in
#: the checkout).
SCHEMA_DIR = Path(str(files("mdmbus.schemas"))) / "avro"
ENVELOPE_FILE = "_envelope.avsc"
_ENVELOPE_IDS = ("device_id", "user_id")


@dataclass(frozen=True)
class KindSpec:
    """One kind of record: its schema, where it is produced and how it is keyed."""

    #: The design's id of the category ("U9", docs/design.md section 1) or event name ("device_session"); also envelope.kind.
    kind: str
    #: Avro full name, e.g. "mdmbus.EnrolledDevice".
    name: str
    #: The kind of topic its records travel on ("upload", "device.sessions", ...); the topic
    #: itself is per region: mdmbus.topics.topic_name(spec.topic, region).
    topic: topics.TopicKind
    #: The envelope field whose value is the Kafka key ("tenant_id" or "device_id").
    key_field: str
    #: Envelope ids that must not be null for this kind (the key field always among them).
    requires: frozenset[str]
    #: The schema as loaded from its file (raw JSON value). Do not mutate.
    schema: Mapping[str, Any] = field(repr=False)
    #: Same schema with named-type references replaced by their definitions (for walkers).
    expanded: Mapping[str, Any] = field(repr=False)
    #: CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little-endian (as on the wire).
    fingerprint: bytes
    path: Path


@dataclass(frozen=True)
class Registry:
    """Every kind of the contract, and the codec that reads and writes them."""

    kinds: Mapping[str, KindSpec]
    #: (kind, schema) of every released schema version, oldest first.
    released: tuple[tuple[str, Mapping[str, Any]], ...] = field(repr=False)
    codec: Codec = field(repr=False)
    envelope: Mapping[str, Any] = field(repr=False)
    #: kind -> (compiled check of decoded records, required envelope ids in order), filled on
    #: first use by mdmbus.contract.rules.validate_decoded.
    decoded_checks: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def spec(self, kind: str) -> KindSpec:
        """The spec of ``kind``; UnknownKindError (a ValidationError) if there is none."""
        try:
            return self.kinds[kind]
        except (KeyError, TypeError):
            raise UnknownKindError(f"unknown kind {kind!r}") from None

    def by_fingerprint(self, fingerprint: bytes) -> KindSpec | None:
        """The current spec whose schema has this fingerprint, if any."""
        for spec in self.kinds.values():
            if spec.fingerprint == fingerprint:
                return spec
        return None

    def key(self, kind: str, record: Mapping[str, Any]) -> bytes:
        """The Kafka key of a record: its key field's uuid as ASCII text (36 bytes)."""
        spec = self.spec(kind)
        value = record["envelope"][spec.key_field]
        if value is None:
            raise MissingIdentifierError(f"{kind} is keyed by envelope.{spec.key_field}, "
                                         "which is null", f"envelope.{spec.key_field}")
        return uuid_key(value)


def uuid_key(value: Any) -> bytes:
    """Key bytes of a uuid given as text or uuid.UUID: the lower-case canonical form."""
    return str(value).lower().encode("ascii")


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def expand_references(schema: Any) -> Any:
    """A copy of ``schema`` where references to named types are their definitions.

    Walkers over records (validation, JSON conversion, redaction) then never resolve names.
    A recursive schema yields a cyclic structure, which record-driven walks handle.
    """
    named: dict[str, Any] = {}

    def walk(node: Any, ns: str | None) -> Any:
        if isinstance(node, str):
            return named.get(_fullname(node, ns), node)
        if isinstance(node, list):
            return [walk(branch, ns) for branch in node]
        kind = node.get("type")
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and "name" not in node
                                              and kind not in ("array", "map")):
            inner = walk(kind, ns)
            if isinstance(inner, str):
                return {**node, "type": inner}  # primitive carrying logicalType etc.
            return inner
        out = dict(node)
        if kind in ("record", "error", "enum", "fixed"):
            full = _fullname(node["name"], node.get("namespace", ns))
            named[full] = out
            inner_ns = full.rpartition(".")[0] or None
            if "fields" in node:
                out["fields"] = [{**f, "type": walk(f["type"], inner_ns)} for f in node["fields"]]
        elif kind == "array":
            out["items"] = walk(node["items"], ns)
        elif kind == "map":
            out["values"] = walk(node["values"], ns)
        return out

    return walk(schema, None)


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: cannot read schema: {exc}") from exc
    if not isinstance(value, dict) or value.get("type") != "record":
        raise ContractError(f"{path}: a top-level schema must be a record")
    return value


def _meta(path: Path, schema: Mapping[str, Any]) -> tuple[str, str]:
    meta = schema.get("mdmbus")
    if not isinstance(meta, dict) or not meta.get("id") or not meta.get("topic"):
        raise ContractError(f"{path}: missing \"mdmbus\": {{\"id\", \"topic\"}} attribute")
    return meta["id"], meta["topic"]


def _check_envelope(path: Path, schema: Mapping[str, Any], envelope: Mapping[str, Any]) -> None:
    fields = schema.get("fields") or [{}]
    first = fields[0]
    if first.get("name") != "envelope" or first.get("type") != envelope:
        raise ContractError(f"{path}: the first field must be \"envelope\" with the type of "
                            f"{ENVELOPE_FILE} inlined unchanged")


def _spec(path: Path, schema: dict[str, Any], envelope: Mapping[str, Any]) -> KindSpec:
    kind, topic_kind = _meta(path, schema)
    _check_envelope(path, schema, envelope)
    try:
        topic = topics.spec_of(topic_kind)
    except KeyError as exc:
        raise ContractError(f"{path}: unknown topic kind {topic_kind!r}") from exc
    key_field = topic.key
    requires = {key_field} | set(schema["mdmbus"].get("requires", ()))
    if not requires <= {"tenant_id", *_ENVELOPE_IDS}:
        raise ContractError(f"{path}: \"requires\" may only name envelope ids")
    name = _fullname(schema["name"], schema.get("namespace"))
    return KindSpec(kind=kind, name=name, topic=topic.kind, key_field=key_field,
                    requires=frozenset(requires - {"tenant_id"}), schema=schema,
                    expanded=expand_references(schema), fingerprint=fingerprint_bytes(schema),
                    path=path)


def _released(directory: Path, kinds: Mapping[str, KindSpec]) -> list[tuple[str, dict]]:
    out = []
    root = directory / "released"
    versions = sorted((p for p in root.glob("v*") if p.is_dir()), key=lambda p: int(p.name[1:]))
    for version in versions:
        for path in sorted(version.glob("*.avsc")):
            schema = _read(path)
            kind, _ = _meta(path, schema)
            if kind not in kinds:
                raise ContractError(f"{path}: released kind {kind!r} has no current schema")
            out.append((kind, schema))
    return out


def load_registry(directory: Path = SCHEMA_DIR) -> Registry:
    """Read and check every schema under ``directory``; ContractError names a broken file."""
    envelope = _read(directory / ENVELOPE_FILE)
    kinds: dict[str, KindSpec] = {}
    for path in sorted(directory.glob("*.avsc")):
        if path.name.startswith("_"):
            continue
        spec = _spec(path, _read(path), envelope)
        if spec.kind in kinds:
            raise ContractError(f"{path}: kind {spec.kind!r} also in {kinds[spec.kind].path}")
        kinds[spec.kind] = spec
    released = _released(directory, kinds)
    codec = Codec({k: s.schema for k, s in kinds.items()}, released)
    return Registry(kinds=MappingProxyType(kinds), released=tuple(released), codec=codec,
                    envelope=envelope)


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The repository's contract, loaded on first use and shared (it is immutable)."""
    return load_registry(SCHEMA_DIR)
