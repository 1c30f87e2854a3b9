"""The JSON form of records (mdmbus.contract.jsonform) inside arrays, maps and optional fields,
and the field each conversion error names."""

from __future__ import annotations

import pytest

from mdmbus.contract import ValidationError, default_registry, from_json, to_json
from tests.unit.examples import example

REGISTRY = default_registry()
U8 = REGISTRY.spec("U8").expanded
U4 = REGISTRY.spec("U4").expanded
MILLIS = 1_714_564_800_250
ISO = "2024-05-01T12:00:00.250Z"
BYTES_MAP = {"type": "record", "name": "T", "fields": [
    {"name": "blobs", "type": {"type": "map", "values": "bytes"}},
    {"name": "either", "type": ["null", "string", "bytes"]}]}


def _u8_json(at: object) -> dict:
    record = to_json(U8, example("U8"))
    record["history"] = [{"state": "INSTALLED", "at": MILLIS}, {"state": "FAILED", "at": at}]
    return record


def test_timestamps_in_an_array_are_converted_both_ways() -> None:
    record = from_json(U8, _u8_json(ISO))
    assert record["history"] == [{"state": "INSTALLED", "at": MILLIS},
                                 {"state": "FAILED", "at": MILLIS}]
    decoded = REGISTRY.codec.decode(REGISTRY.codec.encode("U8", record)).record
    assert to_json(U8, decoded)["history"] == [{"state": "INSTALLED", "at": ISO},
                                               {"state": "FAILED", "at": ISO}]


@pytest.mark.parametrize("at, message", [
    ("yesterday", "history[1].at: 'yesterday' is not an ISO-8601 timestamp"),
    ("2024-05-01T12:00:00", "history[1].at: timestamp '2024-05-01T12:00:00' has no time zone"),
])
def test_a_bad_timestamp_is_named_by_its_place(at: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        from_json(U8, _u8_json(at))
    assert (caught.value.reason, caught.value.path, str(caught.value)) == (
        "schema_mismatch", "history[1].at", message)


def test_optional_bytes_are_base64_both_ways() -> None:
    record = to_json(U4, example("U4"))
    record["icon"] = "AAEC"
    assert from_json(U4, record)["icon"] == b"\x00\x01\x02"
    assert to_json(U4, from_json(U4, record))["icon"] == "AAEC"
    record["icon"] = "AA!C"
    with pytest.raises(ValidationError) as caught:
        from_json(U4, record)
    assert (caught.value.path, str(caught.value)) == ("icon", "icon: is not standard base64")


def test_bytes_in_a_map_are_base64_and_named_by_key() -> None:
    assert from_json(BYTES_MAP, {"blobs": {"a": "AAE=", "b": ""}}) == {
        "blobs": {"a": b"\x00\x01", "b": b""}}
    assert to_json(BYTES_MAP, {"blobs": {"a": b"\x00\x01"}}) == {"blobs": {"a": "AAE="}}
    with pytest.raises(ValidationError) as caught:
        from_json(BYTES_MAP, {"blobs": {"a": "AAE=", "b": "%%"}})
    assert caught.value.path == "blobs['b']"


def test_what_has_no_single_json_form_is_kept_as_given() -> None:
    """A union of several types, and a field the schema does not have (which validation then
    refuses by name), pass through both ways unchanged."""
    given = {"blobs": {}, "either": "AAE=", "unknown": "AAE="}
    assert from_json(BYTES_MAP, given) == given
    assert to_json(BYTES_MAP, {"blobs": {}, "either": b"\x00", "unknown": b"\x00"}) == {
        "blobs": {}, "either": b"\x00", "unknown": b"\x00"}


def test_uuids_and_timestamps_given_as_objects_are_written_as_text_in_utc(monkeypatch) -> None:
    """Whatever the machine's time zone: a timestamp's JSON form is UTC, with a Z."""
    import time
    import uuid
    from datetime import datetime, timedelta, timezone

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        record = example("U9")
        record["envelope"]["tenant_id"] = uuid.UUID(record["envelope"]["tenant_id"])
        record["envelope"]["event_time"] = datetime(2024, 5, 1, 14, 0, 0, 250000,
                                                    tzinfo=timezone(timedelta(hours=2)))
        envelope = to_json(REGISTRY.spec("U9").expanded, record)["envelope"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert envelope["tenant_id"] == str(record["envelope"]["tenant_id"])
    assert envelope["event_time"] == ISO


def test_a_value_of_the_wrong_json_type_is_kept_for_validation_to_name() -> None:
    record = to_json(U4, example("U4"))
    record["icon"] = {"not": "base64"}
    assert from_json(U4, record)["icon"] == {"not": "base64"}
