"""Generates docs/contract.md from the schemas, so the producer guide cannot drift from them.

``python -m mdmbus.contract docs > docs/contract.md``; a unit test fails when the checked-in file
differs from what this produces.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator, Mapping

from mdmbus import topics
from mdmbus.canonical import to_signed64
from mdmbus.codec import HEADER_SIZE
from mdmbus.contract.limits import MAX_RECORD_BYTES
from mdmbus.contract.registry import KindSpec, Registry

__all__ = ["render", "EXAMPLE_KIND", "EXAMPLE_JSON", "PYTHON_AVRO_EXAMPLE", "sort_key"]

#: The record of the worked example (JSON form, as `mdmbus produce` takes it).
EXAMPLE_KIND = "U12"
EXAMPLE_JSON: Mapping[str, Any] = {
    "envelope": {
        "record_id": "0b9f8a3e-5c1d-4e2f-9a7b-1c2d3e4f5a6b",
        "tenant_id": "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
        "device_id": None,
        "user_id": None,
        "event_time": "2024-05-01T12:00:00.000Z",
        "kind": "U12",
    },
    "build_version": "5.0.7958.1000",
}


def sort_key(kind: str) -> tuple[int, int, str]:
    """U1..U14, then R1..R6, then the other kinds by name."""
    if kind[:1] in "UR" and kind[1:].isdigit():
        return ("UR".index(kind[0]), int(kind[1:]), "")
    return (2, 0, kind)


def _type(node: Any) -> str:
    if isinstance(node, list):
        rest = [b for b in node if b != "null"]
        inner = " | ".join(_type(b) for b in rest)
        return f"{inner} or null" if "null" in node else inner
    if isinstance(node, str):
        return node
    kind = node["type"]
    if kind == "array":
        return f"array of {_type(node['items'])}"
    if kind == "map":
        return f"map of string to {_type(node['values'])}"
    if kind == "enum":
        return f"enum {node['name']} ({', '.join(node['symbols'])})"
    if kind == "record":
        return f"record {node['name']}"
    logical = node.get("logicalType")
    return f"{kind} ({logical})" if logical else kind


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _nested(node: Any, seen: set[str]) -> Iterator[Mapping[str, Any]]:
    """Named records inside ``node`` (first occurrence each), depth first."""
    if isinstance(node, list):
        for branch in node:
            yield from _nested(branch, seen)
    elif isinstance(node, Mapping):
        kind = node["type"]
        if kind == "record" and node["name"] not in seen:
            seen.add(node["name"])
            yield node
            for field in node["fields"]:
                yield from _nested(field["type"], seen)
        elif kind == "array":
            yield from _nested(node["items"], seen)
        elif kind == "map":
            yield from _nested(node["values"], seen)


def _fields(record: Mapping[str, Any]) -> list[str]:
    rows = ["| field | type | description |", "|---|---|---|"]
    for field in record["fields"]:
        notes = ""
        meta = field.get("mdmbus") or {}
        if meta.get("opaque"):
            notes = " **Opaque.**"
        if meta.get("public_key_only"):
            notes = " **Public key only.**"
        rows.append(f"| `{field['name']}` | {_cell(_type(field['type']))} | "
                    f"{_cell(field['doc'])}{notes} |")
    return rows


def _topic(kind: str) -> str:
    """A topic kind's name as a producer writes it: per region, or the global name."""
    spec = topics.spec_of(kind)
    return f"mdm.<region>.{kind}" if spec.regional else spec.name()


def _schema_section(spec: KindSpec) -> list[str]:
    fp = int.from_bytes(spec.fingerprint, "little")
    lines = [
        f"### {spec.kind}: `{spec.name}`", "",
        _cell(spec.schema["doc"]), "",
        f"- file: `schemas/avro/{spec.path.name}`",
        f"- topic: `{_topic(spec.topic)}`, key: `envelope.{spec.key_field}`",
        f"- envelope ids required: {', '.join(f'`{r}`' for r in sorted(spec.requires)) or 'none'}",
        f"- fingerprint: `{spec.fingerprint.hex()}` (wire bytes), {to_signed64(fp)} (signed)",
        "",
    ]
    records = list(_nested(spec.expanded, {"Envelope"}))
    for record in records:
        if record is not records[0]:
            lines += [f"`{record['name']}`: {_cell(record['doc'])}", ""]
        lines += _fields(record) + [""]
    return lines


def _hexdump(data: bytes) -> list[str]:
    return [f"{i:04x}  {data[i:i + 16].hex(' ')}" for i in range(0, len(data), 16)]


def _example(registry: Registry) -> list[str]:
    from mdmbus.contract.jsonform import from_json  # local: only the docs need it here

    spec = registry.spec(EXAMPLE_KIND)
    record = from_json(spec.expanded, EXAMPLE_JSON)
    value = registry.codec.encode(EXAMPLE_KIND, record)
    key = registry.key(EXAMPLE_KIND, record)
    line = json.dumps({"kind": EXAMPLE_KIND, "record": EXAMPLE_JSON})
    return [
        "## Worked example", "",
        "A U12 record, as one line of `mdmbus produce` input:", "",
        "```json", line, "```", "",
        f"goes, for a tenant onboarded in Germany (region eu), to topic "
        f"`{topics.topic_name(spec.topic, 'eu')}` with key `{key.decode()}` (its tenant id as "
        f"text) and this {len(value)}-byte value:", "",
        "```", *_hexdump(value), "```", "",
        f"- `{value[:2].hex(' ')}`: the single-object marker;",
        f"- `{value[2:HEADER_SIZE].hex(' ')}`: CRC-64-AVRO fingerprint of the U12 schema's "
        "Parsing Canonical Form, little-endian;",
        "- the rest is the Avro binary body: the envelope's fields in order (record_id as a "
        "length-prefixed string, tenant_id, device_id union index 0 = null, user_id null, "
        "event_time as a zig-zag varint of epoch milliseconds, kind \"U12\"), then "
        "build_version.", "",
        "Base64 of the value, for copying: "
        f"`{base64.b64encode(value).decode()}`", "",
    ]


#: The worked example for Python producers that use the Apache ``avro`` package rather than
#: mdmbus; tests/unit/test_contract_docs.py runs it and compares its bytes with mdmbus's.
PYTHON_AVRO_EXAMPLE = """\
import datetime, io, json
import avro.io, avro.schema

def without_logical_types(node):
    \"\"\"The schema as its fingerprint sees it: the canonical form drops logical types.\"\"\"
    if isinstance(node, list):
        return [without_logical_types(branch) for branch in node]
    if isinstance(node, dict):
        if "logicalType" in node and isinstance(node.get("type"), str):
            return node["type"]
        return {key: without_logical_types(value) for key, value in node.items()}
    return node

def single_object(schema_json, record):
    schema = avro.schema.parse(json.dumps(schema_json))
    # NOT schema.fingerprint(): avro 1.12 keeps {"type": "string"} for a uuid's logical type.
    fingerprint = avro.schema.parse(json.dumps(without_logical_types(schema_json))).fingerprint()
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(body))
    return b"\\xc3\\x01" + fingerprint + body.getvalue()

with open("schemas/avro/u12_connector_version.avsc") as f:
    schema_json = json.load(f)
value = single_object(schema_json, {
    "envelope": {"record_id": "0b9f8a3e-5c1d-4e2f-9a7b-1c2d3e4f5a6b",
                 "tenant_id": "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
                 "device_id": None, "user_id": None, "kind": "U12",
                 "event_time": datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.timezone.utc)},
    "build_version": "5.0.7958.1000"})
key = b"6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"  # the tenant id as lower-case text
"""


def _intro() -> str:
    return f"""\
# mdmbus data contract

<!-- Generated by `python -m mdmbus.contract docs > docs/contract.md`; do not edit by hand.
     tests/unit/test_contract_docs.py fails when this file is out of date. -->

For systems that produce records into mdmbus in any language. The schemas in `schemas/avro/`
are the contract; this page is generated from them. Each `.avsc` file is self-contained: load
the one file you produce with (the common `mdmbus.Envelope` record is inlined in each, and
`schemas/avro/_envelope.avsc` is its single source of truth). The limits below are defined
once, in `mdmbus/contract/limits.py`; the producer, the pipeline and the gateway enforce them
alike and refuse a record for the same reason (the code in brackets), in this order: size,
encoding, content, topic, key.

## Wire format

Every message value is Avro **single-object encoding** (Avro specification, "Single object
encoding"), with no schema registry:

| bytes | content |
|---|---|
| 0-1 | marker `C3 01` |
| 2-9 | CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, little-endian |
| 10- | the record in Avro binary encoding |

**Size**: a message value (all three parts) is at most **{MAX_RECORD_BYTES} bytes
({MAX_RECORD_BYTES // 1024} KiB)** [oversized]; a larger one is refused before it is decoded.

Most Avro libraries have single-object encoding built in (Java `BinaryMessageEncoder`, Rust
`apache-avro` `SpecificSingleObjectWriter`, ...). Computing the fingerprint yourself: strictly
follow the specification's canonical form; a primitive with a logical type (e.g.
`{{"type": "string", "logicalType": "uuid"}}`) canonicalises to the bare primitive (`"string"`).
The fingerprints below are what mdmbus expects; a message whose fingerprint is not a current or
released mdmbus schema is refused [unknown_fingerprint]; other broken bytes are [garbage],
[wrong_marker], [truncated] or [body_mismatch], and a message with no value [empty].

**Message key**: the uuid named below as the key (`envelope.tenant_id`, or `envelope.device_id`
on the device topics), as its lower-case canonical text in ASCII (36 bytes, e.g.
`6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9`). A message with no key is refused [missing_key], one
whose key is anything else, even the same uuid in upper case, [wrong_key]: the key picks the
partition, and one tenant's records must stay in order on one. Partition with the Java
client's default, murmur2 of the key bytes (librdkafka-based clients such as kcat:
`partitioner=murmur2_random`; their default, CRC32, would put a tenant's records on another
partition than mdmbus's own producers and break their order). A kind sent to a topic it does
not belong on is refused [wrong_topic].

**Uuids**: every uuid field holds the lower-case canonical text, 8-4-4-4-12 hexadecimal digits
and nothing else [schema_mismatch]: upper case, braces, no hyphens or a `urn:uuid:` prefix are
refused, since two spellings of one id would be two keys.

**Content rules** beyond the schema types: no fields beyond the schema [unknown_field]; no
private key in any string or bytes field but the opaque ones [private_key_material]: PEM armour,
or the DER of a PKCS#1, PKCS#8 (plain or encrypted), SEC 1 or PKCS#12 key, raw, base64 or hex,
with or without line breaks (public keys and certificates are not private keys); no PEM
certificate (any label ending in
`CERTIFICATE`: `CERTIFICATE`, `TRUSTED CERTIFICATE`, `X509 CERTIFICATE`, ...) in any field but
U10's public-key field [certificate_body]; U10's `scep_challenge_encryption_certificate` must be
a public key or a certificate, PEM or DER [not_public_key]; U7 `email` (even an empty one) only
with `email_profile_deployed` true [email_without_profile]; `envelope.kind` equals the kind
[kind_mismatch]; the envelope ids a kind requires are set [missing_identifier]; onboarding
`country` is ISO 3166-1 alpha-2 [invalid_country]; command arguments are set exactly for their
command, and an R1 record has at least one section [invalid_value]. Opaque fields (encrypted
content and keys, packages) are never inspected.

**JSON form** (input of `mdmbus produce`, one record per line:
`{{"kind": "U9", "record": {{...}}}}`): uuids as strings; timestamps as ISO-8601 strings with a
time zone or integers of epoch milliseconds; bytes as standard base64 strings; optional fields
as `null` or the plain value (no Avro-JSON union wrapper; every union in these schemas is
`null` or one type).

## Producing from other languages

**Java**: `examples/java/` is a complete program (Apache Avro's `BinaryMessageEncoder`,
`BinaryMessageDecoder` and `SchemaNormalization`, nothing of mdmbus) with a README; a test
checks that its fingerprints of every schema equal mdmbus's and that records cross both ways.

**Python with the Apache `avro` package**: `avro` 1.12 computes the canonical form with
`{{"type": "string"}}` where the specification says `"string"` for a logical type, so
`schema.fingerprint()` is wrong for every mdmbus schema with a uuid or timestamp. Take the
fingerprint of the schema without its logical types, and write the body with the real schema
(this exact code is run by a test and gives the bytes of the worked example below):

```python
{PYTHON_AVRO_EXAMPLE.rstrip()}
```

Or use mdmbus's own API (`pip install` this project): `mdmbus.producer.prepare_record(kind,
record)` returns the topic, key and value after the checks above.

## Regions

Every tenant lives in one region (`na`, `eu`, `ap`), picked once, at onboarding, by its
country (`mdmbus/data/country_regions.csv`), and recorded in the tenant directory. Each region
has its own topics, `mdm.<region>.<kind>`; only the tenant lifecycle topic is global. A
producer writes a tenant's records to the topics of the tenant's region:

- the region never changes, so a producer may keep it once known; it is in the tenant
  directory (database `mdmbus_directory`: `SELECT region FROM tenant_directory WHERE
  tenant_id = $1`), in the answer of the gateway's `GET /v1/status`, and it is what the
  country table says for the tenant's onboarding country;
- a record sent to another region's topic is refused there [wrong_region] and its body is not
  kept in that region; a record of a tenant not onboarded [tenant_not_onboarded] or whose data
  was deleted [tenant_deleted] is refused too (its body is kept for operators for a few days in
  the first case, not at all in the second);
- a tenant's own systems (its CM connector, its administrators) do not write to Kafka: they
  upload through their region's HTTPS gateway (`services/gateway/openapi.yaml`).

`mdmbus produce` looks every tenant up in the directory (or takes `--region`).

## Topics and keys

| topic | key | kinds |
|---|---|---|
"""


def render(registry: Registry) -> str:
    """The whole of docs/contract.md."""
    kinds = sorted(registry.kinds.values(), key=lambda s: sort_key(s.kind))
    lines = [_intro().rstrip("\n")]
    for spec_topic in topics.TOPICS:
        names = [s.kind for s in kinds if s.topic == spec_topic.kind]
        if names:
            lines.append(f"| `{_topic(spec_topic.kind)}` | `envelope.{spec_topic.key}` | "
                         f"{', '.join(names)} |")
    lines += ["", *_example(registry), "## The envelope (`mdmbus.Envelope`)", "",
              _cell(registry.envelope["doc"]), "", *_fields(registry.envelope), "",
              "## Schemas", ""]
    for spec in kinds:
        lines += _schema_section(spec)
    released = sorted({k for k, _ in registry.released}, key=sort_key)
    lines += ["## Released versions", "",
              "`schemas/avro/released/v<N>/` keeps each released schema. Messages written with "
              "any of them keep decoding (resolved to the current schema), and a unit test fails "
              "if a current schema can no longer read them. Kinds with a released version: "
              + (", ".join(released) or "none") + ".", ""]
    return "\n".join(lines)
