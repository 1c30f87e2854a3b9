"""One verdict for one record: the producer (before sending) and the pipeline (on the bytes it
reads) refuse the same records for the same reasons, and the limits of
mdmbus.contract.limits hold at their edges."""

from __future__ import annotations

import copy
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdmbus.codec import CodecError
from mdmbus.contract import ValidationError, default_registry
from mdmbus.contract.limits import MAX_RECORD_BYTES, is_canonical_uuid, oversized
from mdmbus.contract.verdict import Refused, check_message
from mdmbus.producer import prepare_record
from tests.unit.avro_strategies import make_valid, plant, records, text_places
from tests.unit.examples import TENANT, der, example, pem

REGISTRY = default_registry()
KINDS = sorted(REGISTRY.kinds)
PRIVATE = [pem(label, der(name)).decode() for label, name in (
    ("PRIVATE KEY", "ec_private_pkcs8"), ("EC PRIVATE KEY", "ec_private_sec1"),
    ("RSA PRIVATE KEY", "rsa_private_pkcs1"), ("ENCRYPTED PRIVATE KEY",
                                               "ec_private_encrypted_pkcs8"))]
CERTS = [pem(label, der("certificate")).decode()
         for label in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE")]
BAD_UUIDS = [lambda u: u.upper(), lambda u: "{" + u + "}", lambda u: u.replace("-", ""),
             lambda u: "urn:uuid:" + u, lambda u: u + "x", lambda u: u + "\n", lambda u: "x" + u,
             lambda u: u[:-1]]


def producer_verdict(kind: str, record: dict) -> str | None:
    try:
        prepare_record(kind, record, REGISTRY)
    except ValidationError as exc:
        return exc.reason
    except CodecError:
        return "not_encodable"
    return None


def pipeline_verdict(kind: str, record: dict, key: bytes | None = None) -> str | None:
    try:
        value = REGISTRY.codec.encode(kind, record)
    except CodecError:
        return "not_encodable"
    if key is None:
        try:
            key = REGISTRY.key(kind, record)
        except ValidationError:
            key = None
    verdict = check_message(REGISTRY, value, key, REGISTRY.spec(kind).topic)
    return verdict.reason if isinstance(verdict, Refused) else None


DEFECTS = ["none", "private_key", "certificate", "uuid", "kind", "oversized", "identifier",
           "email"]


def _defect(kind: str, record: dict, defect: str, data: st.DataObject) -> str | None:
    """Plants ``defect`` in ``record``; returns the reason expected, or None if ``kind`` has no
    place for it (then the record stays valid)."""
    spec = REGISTRY.spec(kind)
    places = text_places(spec.expanded, record)
    if defect == "private_key" and places:
        plant(record, data.draw(st.sampled_from(places)), data.draw(st.sampled_from(PRIVATE)))
        return "private_key_material"
    if defect == "certificate" and places:
        plant(record, data.draw(st.sampled_from(places)), data.draw(st.sampled_from(CERTS)))
        return "certificate_body"
    if defect == "uuid":
        field = data.draw(st.sampled_from(["record_id", "tenant_id"]))
        record["envelope"][field] = data.draw(st.sampled_from(BAD_UUIDS))(record["envelope"][field])
        return "schema_mismatch"
    if defect == "kind":
        record["envelope"]["kind"] = data.draw(st.sampled_from([k for k in KINDS if k != kind]))
        return "kind_mismatch"
    if defect == "oversized" and places:
        plant(record, data.draw(st.sampled_from(places)), "a" * (MAX_RECORD_BYTES + 1))
        return "oversized"
    if defect == "identifier" and spec.requires:
        record["envelope"][data.draw(st.sampled_from(sorted(spec.requires)))] = None
        return "missing_identifier"
    if defect == "email" and kind == "U7":
        record.update(email=data.draw(st.sampled_from(["", "ana@contoso.com"])),
                      email_profile_deployed=False)
        return "email_without_profile"
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_producer_and_pipeline_give_one_verdict(kind: str) -> None:
    spec = REGISTRY.spec(kind)
    seen: set[str | None] = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(record=records(spec.expanded), defect=st.sampled_from(DEFECTS), data=st.data())
    def check(record: dict, defect: str, data: st.DataObject) -> None:
        make_valid(kind, record, spec)
        expected = _defect(kind, record, defect, data)
        produced = producer_verdict(kind, record)
        assert produced == expected, f"{defect}: producer says {produced}"
        assert pipeline_verdict(kind, record) == produced
        seen.add(produced)

    check()
    # Every kind had records accepted by both, and refused by both.
    assert None in seen, f"no {kind} record was accepted"
    assert seen - {None}, f"no {kind} record was refused"


@pytest.mark.parametrize("kind", KINDS)
def test_the_pipeline_refuses_a_missing_or_foreign_key(kind: str) -> None:
    record = example(kind)
    value = REGISTRY.codec.encode(kind, record)
    right = REGISTRY.key(kind, record)
    topic = REGISTRY.spec(kind).topic
    assert not isinstance(check_message(REGISTRY, value, right, topic), Refused)
    for key, reason in ((None, "missing_key"), (right.upper(), "wrong_key"),
                        (str(uuid.uuid4()).encode(), "wrong_key"), (b"", "wrong_key"),
                        (right + b" ", "wrong_key")):
        verdict = check_message(REGISTRY, value, key, topic)
        assert isinstance(verdict, Refused) and verdict.reason == reason, (key, verdict)


def test_a_record_on_another_topic_is_refused() -> None:
    record = example("U9")
    verdict = check_message(REGISTRY, REGISTRY.codec.encode("U9", record),
                            REGISTRY.key("U9", record), REGISTRY.spec("R1").topic)
    assert isinstance(verdict, Refused) and verdict.reason == "wrong_topic"


def test_the_size_limit_is_exact() -> None:
    record = example("U4")  # encrypted_content: opaque bytes, any size
    base = len(REGISTRY.codec.encode("U4", record)) - len(record["encrypted_content"])

    def sized(total: int) -> dict:
        r = copy.deepcopy(record)
        # the length prefix of the bytes field grows with it: find the content size that
        # makes the whole message exactly ``total`` bytes
        for extra in range(0, 8):
            r["encrypted_content"] = b"\x00" * (total - base - extra)
            if len(REGISTRY.codec.encode("U4", r)) == total:
                return r
        raise AssertionError(f"cannot build a {total}-byte message")

    fits, over = sized(MAX_RECORD_BYTES), sized(MAX_RECORD_BYTES + 1)
    assert producer_verdict("U4", fits) is None and pipeline_verdict("U4", fits) is None
    assert producer_verdict("U4", over) == "oversized" == pipeline_verdict("U4", over)
    assert oversized(MAX_RECORD_BYTES) is None and oversized(MAX_RECORD_BYTES + 1)
    assert check_message(REGISTRY, None, None, None).reason == "empty"


@pytest.mark.parametrize("text, ok", [
    ("6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", True),
    ("6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9\n", False), ("6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9x", False),
    (" 6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", False), ("6F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9", False),
    ("6f1e2d3c4b5a49788695a4b3c2d1e0f9", False), ("", False), (None, False),
    (uuid.UUID(TENANT), False),
])
def test_canonical_uuid(text, ok: bool) -> None:
    assert is_canonical_uuid(text) is ok


@pytest.mark.parametrize("label", ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"])
def test_every_certificate_label_is_a_certificate_body(label: str) -> None:
    for kind, field in (("U3", "subject_name_format"), ("R3", "message")):
        record = example(kind)
        record[field] = pem(label, der("certificate")).decode()
        assert producer_verdict(kind, record) == "certificate_body"
        assert pipeline_verdict(kind, record) == "certificate_body"


@pytest.mark.parametrize("email", ["", "ana@contoso.com"])
def test_u7_refuses_any_email_without_a_deployed_profile(email: str) -> None:
    record = example("U7")
    record.update(email=email, email_profile_deployed=False)
    assert producer_verdict("U7", record) == "email_without_profile"
    assert pipeline_verdict("U7", record) == "email_without_profile"
