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
                                       keep_valid, safe_text)
from mdmbus.streams.classify import RefusedMessage, classify
from tests.keyforms import key_forms, leaked
from tests.keyshapes import SHAPE_NAMES, shapes
from tests.unit.examples import der, example, pem

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


@pytest.mark.parametrize("name, value, reason", _clean_shapes(),
                         ids=[name for name, _, _ in _clean_shapes()])
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


# keep() and safe_text() on inputs chosen by hand, each answer written out in full.
PEM_KEY = pem("EC PRIVATE KEY", der("ec_private_sec1"))


def _sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _r3(message: str) -> tuple[bytes, dict]:
    record = example(KIND)
    record["message"] = message
    return REGISTRY.codec.encode(KIND, record), record


def test_nothing_to_keep_is_said_in_full() -> None:
    assert keep(REGISTRY, None, None) == Kept(None, "not_kept", False, 0, None)


def test_a_decoded_clean_record_is_kept_as_it_came() -> None:
    value, record = _r3("the device could not reach the NDES server")
    assert keep(REGISTRY, value, (KIND, record)) == Kept(value, "scanned", False, len(value),
                                                        _sha(value))


def test_a_clean_record_the_verdict_found_a_key_in_keeps_nothing() -> None:
    """The verdict and the redaction disagree: nothing is kept rather than a body one of
    them thought held a key."""
    value, record = _r3("the device could not reach the NDES server")
    assert keep(REGISTRY, value, (KIND, record), key_found=True) == Kept(
        None, "withheld", False, len(value), _sha(value))


def test_a_decoded_record_holding_a_key_keeps_the_record_with_the_key_replaced() -> None:
    value, record = _r3("see attached: " + PEM_KEY.decode())
    expected = REGISTRY.codec.encode(KIND, dict(record, message="[redacted: private key material]"))
    assert keep(REGISTRY, value, (KIND, record), key_found=True) == Kept(
        expected, "redacted", True, len(value), _sha(value))


def test_a_redacted_record_that_no_longer_encodes_keeps_nothing() -> None:
    """A decoded value that is not a whole record of its kind (here: the message alone)."""
    value = b"\xc3\x01" + PEM_KEY
    kept = keep(REGISTRY, value, (KIND, {"message": PEM_KEY.decode()}), key_found=True)
    assert kept == Kept(None, "withheld", False, len(value), _sha(value))


def test_undecodable_bytes_are_kept_only_when_clean_and_cut_only_when_oversized() -> None:
    clean = b"not a record: " + bytes(range(32, 127)) * 30
    assert len(clean) > 1024
    assert keep(REGISTRY, clean, None) == Kept(clean, "raw_scanned", False, len(clean),
                                               _sha(clean))
    assert keep(REGISTRY, clean, None, oversized=True) == Kept(
        clean[:1024], "raw_scanned", False, len(clean), _sha(clean))
    keyed = b"garbage " + PEM_KEY
    assert keep(REGISTRY, keyed, None) == Kept(None, "withheld", False, len(keyed), _sha(keyed))
    # A key's opening cut short (the first 40 bytes of its armour and body) is withheld too.
    cut = b"x" + PEM_KEY[:40]
    assert keep(REGISTRY, cut, None) == Kept(None, "withheld", False, len(cut), _sha(cut))


@pytest.mark.parametrize("text, shown", [
    ("", ""),
    ("expected a uuid, got 'abc'", "expected a uuid, got 'abc'"),
    ("envelope.tenant_id", "envelope.tenant_id"),
    ("bad: -----BEGIN EC PRIVATE KEY-----", "[withheld: quoted private key material]"),
    ("got " + PEM_KEY.decode(), "[withheld: quoted private key material]"),
])
def test_an_error_text_quoting_key_material_is_replaced(text: str, shown: str) -> None:
    assert safe_text(text) == shown
