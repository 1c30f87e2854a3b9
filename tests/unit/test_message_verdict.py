"""The pipeline's verdict on one message (mdmbus.contract.verdict.check_message) says, besides
the reason, what was wrong in words, and keeps the decoded record wherever there is one; and
the record size limit is the documented one."""

from __future__ import annotations

import pytest

from mdmbus.codec import CodecError
from mdmbus.contract import default_registry
from mdmbus.contract.limits import MAX_RECORD_BYTES, oversized
from mdmbus.contract.verdict import Refused, check_message
from tests.unit.examples import example

REGISTRY = default_registry()


def _message(kind: str = "U9") -> tuple[dict, bytes, bytes]:
    record = example(kind)
    return record, REGISTRY.codec.encode(kind, record), REGISTRY.key(kind, record)


def test_the_record_limit_is_512_kib() -> None:
    """docs/contract.md promises it to producers in every language."""
    assert MAX_RECORD_BYTES == 524_288
    assert oversized(524_288) is None
    assert oversized(524_289) == "524289 bytes is over the 524288-byte limit of a record"


def test_an_empty_and_an_oversized_message_say_why() -> None:
    assert check_message(REGISTRY, None, None, None) == Refused(
        "empty", "message has no value (a tombstone is not a record)")
    assert check_message(REGISTRY, b"\x00" * 524_289, None, None) == Refused(
        "oversized", "524289 bytes is over the 524288-byte limit of a record")


@pytest.mark.parametrize("damage, reason", [
    (lambda v: b"", "garbage"),
    (lambda v: b"\x00\x01" + v[2:], "wrong_marker"),
    (lambda v: v[:2] + bytes(8) + v[10:], "unknown_fingerprint"),
    (lambda v: v[:-1], "truncated"),
    (lambda v: v + b"\x00", "body_mismatch"),
])
def test_bytes_that_do_not_decode_say_why(damage, reason: str) -> None:
    _, value, key = _message()
    with pytest.raises(CodecError) as caught:
        REGISTRY.codec.decode(damage(value))
    assert check_message(REGISTRY, damage(value), key, None) == Refused(reason, str(caught.value))


def test_a_record_on_another_topic_says_where_it_belongs() -> None:
    record, value, key = _message("U9")
    verdict = check_message(REGISTRY, value, key, "elsewhere")
    assert verdict.reason == "wrong_topic"
    assert verdict.error == f"U9 records belong on {REGISTRY.spec('U9').topic}, not elsewhere"
    assert verdict.decoded.record["envelope"]["kind"] == "U9"


def test_a_missing_or_wrong_key_says_which_key_is_expected() -> None:
    record, value, key = _message("U9")
    topic, field = REGISTRY.spec("U9").topic, REGISTRY.spec("U9").key_field
    missing = check_message(REGISTRY, value, None, topic)
    assert missing.reason == "missing_key" and missing.decoded.kind == "U9"
    assert missing.error == f"message has no key; U9 is keyed by envelope.{field}"
    assert str(missing.decoded.record["envelope"][field]) == record["envelope"][field]
    wrong = check_message(REGISTRY, value, key.upper(), topic)
    assert wrong.reason == "wrong_key" and wrong.decoded.kind == "U9"
    assert wrong.error == (f"message key is not envelope.{field} as lower-case text "
                           "(36 bytes given)")
    assert str(wrong.decoded.record["envelope"][field]) == record["envelope"][field]
    assert check_message(REGISTRY, value, bytearray(key), topic).kind == "U9"
