"""A dead letter keeps no key material, whatever shape the refused message has and whatever
check refused it: the pipeline's classifier (streams.classify, the one place a refusal's body
is decided) is given every shape (tests/keyshapes.py) of every key form (tests/keyforms.py) on
a relay topic, and the body, error and field it would store are searched for fragments of the
planted secrets (an oracle independent of the scanner). Clean messages refused for the same
reasons keep their bodies, so the rule is not "keep nothing"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from mdmbus.contract import default_registry
from mdmbus.contract.retention import (RAW_SCANNED, REDACTED_BODY, SCANNED, WITHHELD, Kept, keep,
                                       keep_valid)
from mdmbus.streams.classify import RefusedMessage, classify
from tests.keyforms import key_forms, leaked
from tests.keyshapes import SHAPE_NAMES, shapes
from tests.unit.examples import example

REGISTRY = default_registry()
TOPIC = "mdm.eu.relay"
KIND = "R3"  # relayed error message: a string field the device side writes


@dataclass
class Msg:
    value: bytes | None
    key: bytes | None
    topic: str = TOPIC
    partition: int = 0
    offset: int = 0
    headers: list = field(default_factory=list)


def _rejected(value: bytes | None, key: bytes | None = None) -> RefusedMessage:
    verdict = classify(REGISTRY, Msg(value, key))
    assert isinstance(verdict, RefusedMessage)
    return verdict


@pytest.mark.parametrize("form", key_forms(), ids=lambda f: f.name)
def test_no_shape_of_a_key_leaves_key_material_in_its_dead_letter(form) -> None:
    seen = set()
    for shape in shapes(KIND, example(KIND), form):
        seen.add(shape.name)
        r = _rejected(shape.value, shape.key)
        stored = (r.body or b"") + r.error.encode() + r.path.encode()
        assert not leaked(stored), (shape.name, r.reason, r.kept)
        assert r.kept is not None and r.kept.basis in (WITHHELD, REDACTED_BODY), (
            shape.name, r.reason, r.kept.basis if r.kept else None)
        assert r.kept.length == len(shape.value)
        assert r.kept.sha256 == hashlib.sha256(shape.value).hexdigest()
    assert seen == set(SHAPE_NAMES) or not form.text


def _clean_shapes() -> list[tuple[str, bytes, str]]:
    record = example(KIND)
    record["message"] = "the device could not reach the NDES server " * 3
    good = REGISTRY.codec.encode(KIND, record)
    bad = dict(record, envelope=dict(record["envelope"],
                                     record_id=record["envelope"]["record_id"].upper()))
    return [("whole_file", b"just some text that is not a record", "wrong_marker"),
            ("truncated", good[:-1], "truncated"),
            ("bytes_appended", good + b"\x00\x01", "body_mismatch"),
            ("oversized", good + bytes(600 * 1024), "oversized"),
            ("schema_mismatch", REGISTRY.codec.encode(KIND, bad), "schema_mismatch")]


@pytest.mark.parametrize("name, value, reason", _clean_shapes(), ids=lambda v: str(v)[:20])
def test_clean_refused_messages_keep_their_bodies(name: str, value: bytes, reason: str) -> None:
    """Positive control: scanned whole and clean, the body is kept (a KiB of an oversized one)."""
    r = _rejected(value)
    assert r.reason == reason
    if name == "schema_mismatch":
        assert (r.kept.basis, r.body) == (SCANNED, value)
    else:
        assert r.kept.basis == RAW_SCANNED
        assert r.body == (value[:1024] if name == "oversized" else value)


def test_an_empty_message_keeps_nothing_and_says_so() -> None:
    kept = keep(REGISTRY, None, None)
    assert (kept.body, kept.basis, kept.length, kept.sha256) == (None, "not_kept", 0, None)


def test_a_record_refused_by_a_rule_keeps_its_body_where_the_rule_keeps_bodies() -> None:
    """keep_valid: a record that passed every content check (refused by a rule, e.g. its tenant
    in retention) keeps its bytes as they came, or none where the rule keeps no body; both
    say its length and SHA-256."""
    value = b"\xc3\x01" + bytes(range(40))
    digest = hashlib.sha256(value).hexdigest()
    assert keep_valid(value, True) == Kept(value, "scanned", False, 42, digest)
    assert keep_valid(value, False) == Kept(None, "not_kept", False, 42, digest)
