"""fastavro (our hot path) and the Apache ``avro`` package (the reference) agree on every schema.

For generated records of every mdmbus schema: what fastavro writes, avro reads and writes back to
the identical bytes; what avro writes, fastavro reads and writes back to the identical bytes.
"""

from __future__ import annotations

import io
import json

import avro.io
import avro.schema
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings

from mdmbus.contract import default_registry
from tests.unit.avro_strategies import records

REGISTRY = default_registry()
KINDS = sorted(REGISTRY.kinds)


def _fastavro_write(parsed: object, record: object) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def _avro_write(schema: avro.schema.Schema, record: object) -> bytes:
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def _avro_read(schema: avro.schema.Schema, body: bytes) -> object:
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))


@pytest.mark.parametrize("kind", KINDS)
def test_fastavro_and_apache_avro_write_identical_bodies(kind: str) -> None:
    spec = REGISTRY.spec(kind)
    reference = avro.schema.parse(json.dumps(dict(spec.schema)))
    parsed = parse_schema(dict(spec.schema), named_schemas={})

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(record=records(spec.expanded))
    def check(record: dict) -> None:
        ours = _fastavro_write(parsed, record)
        assert _avro_write(reference, _avro_read(reference, ours)) == ours
        theirs = _avro_write(reference, record)
        assert theirs == ours
        assert _fastavro_write(parsed, schemaless_reader(io.BytesIO(theirs), parsed, None)) == theirs

    check()


@pytest.mark.parametrize("kind", ["U9", "U10", "R1"])
def test_codec_messages_carry_an_avro_readable_body(kind: str) -> None:
    """The body after the 10-byte header is plain Avro binary the reference implementation reads."""
    spec = REGISTRY.spec(kind)
    reference = avro.schema.parse(json.dumps(dict(spec.schema)))

    @settings(max_examples=20, deadline=None)
    @given(record=records(spec.expanded))
    def check(record: dict) -> None:
        message = REGISTRY.codec.encode(kind, record)
        assert message[2:10] == spec.fingerprint
        assert _avro_write(reference, _avro_read(reference, message[10:])) == message[10:]

    check()
