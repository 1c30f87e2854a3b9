"""The single-object codec: the Java-written test message, round trips, and every bad input."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmbus.codec import (BodyMismatchError, Codec, CodecError, GarbageError,
                          RecordMismatchError, TruncatedBodyError, UnknownFingerprintError,
                          NoSchemaError, WrongMarkerError)
from mdmbus.errors import MdmbusError

DATA = Path(__file__).resolve().parents[1] / "data" / "avro" / "messageV1"
TEST_SCHEMA = json.loads((DATA / "test_schema.avsc").read_text())

SCHEMA = {"type": "record", "name": "Thing", "namespace": "t", "fields": [
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "n", "type": "long"},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["A", "B"]}},
    {"name": "label", "type": ["null", "string"], "default": None},
]}
RECORD = {"id": "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "n": 7, "state": "B", "label": "x"}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec({"thing": SCHEMA, "test": TEST_SCHEMA})


def test_decodes_the_message_written_by_java(codec: Codec) -> None:
    kind, record = codec.decode((DATA / "test_message.bin").read_bytes())
    assert kind == "test"
    assert record == {"id": 42, "name": "Bill", "tags": ["dog_lover", "cat_hater"]}


def test_encodes_the_message_written_by_java_byte_for_byte(codec: Codec) -> None:
    record = {"id": 42, "name": "Bill", "tags": ["dog_lover", "cat_hater"]}
    assert codec.encode("test", record) == (DATA / "test_message.bin").read_bytes()


def test_round_trip_and_header(codec: Codec) -> None:
    data = codec.encode("thing", RECORD)
    assert data[:2] == b"\xc3\x01" and data[2:10] == codec.fingerprint("thing")
    kind, record = codec.decode(data)
    assert kind == "thing"
    assert str(record["id"]) == RECORD["id"] and record["state"] == "B"
    assert codec.decode(memoryview(data)).kind == "thing"
    assert codec.decode(bytearray(data)).kind == "thing"


@pytest.mark.parametrize("data, error", [
    (None, GarbageError),
    ("c301", GarbageError),
    (b"", GarbageError),
    (b"\xc3\x01\x00", GarbageError),
    (b"\x00\x01" + bytes(8) + b"\x02", WrongMarkerError),
    (b"\xc3\x02" + bytes(8) + b"\x02", WrongMarkerError),
    (b"\xc3\x01" + bytes(8) + b"\x02", UnknownFingerprintError),
])
def test_bad_headers_raise_their_own_error(codec: Codec, data: object, error: type) -> None:
    with pytest.raises(error) as caught:
        codec.decode(data)  # type: ignore[arg-type]
    assert str(caught.value)
    assert isinstance(caught.value, CodecError) and isinstance(caught.value, MdmbusError)


def test_every_truncation_is_a_truncated_body(codec: Codec) -> None:
    data = codec.encode("thing", RECORD)
    for end in range(10, len(data)):
        with pytest.raises(TruncatedBodyError, match="thing body ends early"):
            codec.decode(data[:end])


def test_body_that_does_not_match_the_schema(codec: Codec) -> None:
    data = codec.encode("thing", RECORD)
    header = data[:10]
    # a string that is not UTF-8
    not_utf8 = header + b"\x48" + b"\xff" * 36 + data[10 + 37:]
    with pytest.raises(BodyMismatchError, match="does not match its writer schema"):
        codec.decode(not_utf8)
    # enum index 5 of a 2-symbol enum
    body = bytearray(data)
    body[10 + 37 + 1] = 10
    with pytest.raises(BodyMismatchError):
        codec.decode(bytes(body))
    with pytest.raises(BodyMismatchError, match="left over"):
        codec.decode(data + b"\x00")


@pytest.mark.parametrize("text", ["6F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9",
                                  "6f1e2d3c4b5a49788695a4b3c2d1e0f9",
                                  "{6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9}",
                                  "urn:uuid:6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "zzzz"])
def test_uuid_fields_are_read_as_the_text_that_was_written(codec: Codec, text: str) -> None:
    """Not normalised by the reader: the contract's validation must see what the producer wrote
    (it refuses all of these; mdmbus.contract.limits)."""
    _, record = codec.decode(codec.encode("thing", {**RECORD, "id": text}))
    assert record["id"] == text


def test_unknown_fingerprint_names_it(codec: Codec) -> None:
    data = b"\xc3\x01" + bytes(range(8)) + b"\x00"
    with pytest.raises(UnknownFingerprintError, match="0001020304050607") as caught:
        codec.decode(data)
    assert caught.value.fingerprint == bytes(range(8))


@pytest.mark.parametrize("record", [
    {**RECORD, "n": "seven"},
    {**RECORD, "label": 3},
    {k: v for k, v in RECORD.items() if k != "n"},
    None,
    "not a record",
])
def test_encode_rejects_records_not_matching_the_schema(codec: Codec, record: object) -> None:
    with pytest.raises(RecordMismatchError, match="thing record does not match"):
        codec.encode("thing", record)  # type: ignore[arg-type]


def test_encode_unknown_kind(codec: Codec) -> None:
    with pytest.raises(NoSchemaError):
        codec.encode("nope", RECORD)
    with pytest.raises(NoSchemaError):
        codec.encode(["unhashable"], RECORD)  # type: ignore[arg-type]


def test_released_schema_is_resolved_to_the_current_one() -> None:
    old = {**SCHEMA, "fields": SCHEMA["fields"][:2]}  # v1 had no state and label
    new = {**SCHEMA, "fields": SCHEMA["fields"][:2] + [
        {"name": "label", "type": ["null", "string"], "default": None},
        {"name": "seen", "type": {"type": "long", "logicalType": "timestamp-millis"},
         "default": 0},
    ]}
    writer = Codec({"thing": old})
    reader = Codec({"thing": new}, released=[("thing", old)])
    kind, record = reader.decode(writer.encode("thing", {"id": RECORD["id"], "n": 1}))
    assert kind == "thing" and record["label"] is None and record["n"] == 1
    # fastavro fills a default in as written in the schema, without the logical-type
    # conversion (0, not a datetime); validate() accepts both representations.
    assert record["seen"] in (0, datetime(1970, 1, 1, tzinfo=timezone.utc))


def test_two_kinds_may_not_share_a_schema() -> None:
    with pytest.raises(ValueError, match="share fingerprint"):
        Codec({"a": SCHEMA, "b": SCHEMA})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bodies_only_ever_raise_codec_errors(body: bytes) -> None:
    codec = Codec({"thing": SCHEMA})
    try:
        codec.decode(b"\xc3\x01" + codec.fingerprint("thing") + body)
    except CodecError:
        pass
