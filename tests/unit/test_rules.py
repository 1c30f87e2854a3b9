"""Content rules the Avro schema cannot express (docs/design.md rule 5), and dead-letter redaction."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdmbus.codec import CodecError
from mdmbus.contract import (REASONS, REDACTED, ValidationError, default_registry, redact,
                             validate, validate_decoded)
from mdmbus.contract import errors as e
from tests.unit.avro_strategies import make_valid, records, text_places
from tests.unit.avro_strategies import plant as plant_text
from tests.unit.examples import TENANT, der, example, pem

PRIVATE_PEMS = {
    "pkcs8": pem("PRIVATE KEY", der("ec_private_pkcs8")),
    "sec1": pem("EC PRIVATE KEY", der("ec_private_sec1")),
    "pkcs1": pem("RSA PRIVATE KEY", der("rsa_private_pkcs1")),
    "encrypted": pem("ENCRYPTED PRIVATE KEY", der("ec_private_encrypted_pkcs8")),
}
PRIVATE_DERS = ["ec_private_pkcs8", "ec_private_sec1", "rsa_private_pkcs1",
                "ec_private_encrypted_pkcs8"]


def _decoded(kind: str, record: dict) -> dict | None:
    """``record`` as the pipeline sees it after decoding, or None if it cannot be encoded."""
    codec = default_registry().codec
    try:
        return codec.decode(codec.encode(kind, record))[1]
    except (CodecError, ValueError, TypeError, AttributeError, KeyError, OverflowError):
        return None


def _verdict(check, record: dict) -> str | None:
    try:
        check(record)
    except ValidationError as exc:
        return f"{exc.reason}: {exc}"
    return None


def _reason(kind: str, record: dict) -> str:
    """The reason validate gives. The record as the pipeline decodes it (unknown fields are
    lost on the way) gets the same verdict, naming the same field, from validate_decoded."""
    with pytest.raises(ValidationError) as caught:
        validate(kind, record)
    assert caught.value.reason in REASONS
    assert str(caught.value)
    decoded = _decoded(kind, record)
    if decoded is not None:
        registry = default_registry()
        assert _verdict(lambda r: validate_decoded(kind, r, registry), decoded) == \
            _verdict(lambda r: validate(kind, r, registry), decoded)
    return caught.value.reason


def _u10(cert: bytes) -> dict:
    record = example("U10")
    record["scep_challenge_encryption_certificate"] = cert
    return record


# ---------------------------------------------------------------- U10 public key only

@pytest.mark.parametrize("cert", [
    pem("CERTIFICATE", der("certificate")),
    der("certificate"),
    pem("PUBLIC KEY", der("ec_public_spki")),
    der("ec_public_spki"),
    pem("RSA PUBLIC KEY", der("rsa_public_pkcs1")),
    b"Subject: CN=scep\n" + pem("CERTIFICATE", der("certificate")),  # explanatory text
], ids=["cert-pem", "cert-der", "spki-pem", "spki-der", "rsa-public-pem", "cert-with-text"])
def test_scep_certificate_accepts_public_keys_and_certificates(cert: bytes) -> None:
    validate("U10", _u10(cert))


@pytest.mark.parametrize("name", sorted(PRIVATE_PEMS))
def test_scep_certificate_rejects_private_key_pem(name: str) -> None:
    assert _reason("U10", _u10(PRIVATE_PEMS[name])) == "private_key_material"


@pytest.mark.parametrize("name", PRIVATE_DERS)
def test_scep_certificate_rejects_private_key_der(name: str) -> None:
    assert _reason("U10", _u10(der(name))) == "private_key_material"


@pytest.mark.parametrize("name", PRIVATE_DERS)
def test_scep_certificate_rejects_private_key_under_a_public_label(name: str) -> None:
    assert _reason("U10", _u10(pem("PUBLIC KEY", der(name)))) == "private_key_material"


def test_scep_certificate_rejects_a_certificate_bundled_with_its_key() -> None:
    bundle = pem("CERTIFICATE", der("certificate")) + PRIVATE_PEMS["pkcs8"]
    assert _reason("U10", _u10(bundle)) == "private_key_material"


@pytest.mark.parametrize("cert", [
    b"", b"hello", b"\x30\x03\x02\x01", pem("CERTIFICATE REQUEST", der("ec_public_spki")),
    b"-----BEGIN CERTIFICATE-----\n!!!notbase64\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\nno end line",
])
def test_scep_certificate_rejects_what_is_not_a_public_key(cert: bytes) -> None:
    assert _reason("U10", _u10(cert)) == "not_public_key"


# ---------------------------------------------------------------- private keys anywhere

@pytest.mark.parametrize("kind, path", [
    ("U1", ("value",)),
    ("U12", ("build_version",)),
    ("U3", ("certificate_template_name",)),
    ("R3", ("message",)),
    ("U4", ("icon",)),  # bytes, not opaque
])
def test_private_key_pem_is_rejected_in_any_field(kind: str, path: tuple) -> None:
    record = example(kind)
    value = PRIVATE_PEMS["pkcs1"]
    record[path[0]] = value if kind == "U4" else "key: " + value.decode()
    assert _reason(kind, record) == "private_key_material"


def test_private_key_pem_is_rejected_deep_in_arrays_and_maps() -> None:
    record = example("R1")
    record["inventory"] = {"software": [{"name": "ok", "version": None}],
                           "hardware": {"Model": "x"}}
    validate("R1", record)
    record["inventory"]["software"].append({"name": PRIVATE_PEMS["sec1"].decode(), "version": None})
    assert _reason("R1", record) == "private_key_material"
    record["inventory"]["software"].pop()
    record["inventory"]["hardware"][PRIVATE_PEMS["pkcs8"].decode()] = "in a map key"
    assert _reason("R1", record) == "private_key_material"


@pytest.mark.parametrize("kind, field", [("U4", "encrypted_content"), ("U13", "encrypted_key"),
                                         ("R4", "package")])
def test_opaque_fields_are_not_inspected(kind: str, field: str) -> None:
    record = example(kind)
    record[field] = PRIVATE_PEMS["pkcs8"] + pem("CERTIFICATE", der("certificate"))
    validate(kind, record)


# ---------------------------------------------------------------- certificate bodies

def test_u3_must_not_carry_the_certificate() -> None:
    record = example("U3")
    record["subject_name_format"] = pem("CERTIFICATE", der("certificate")).decode()
    assert _reason("U3", record) == "certificate_body"


def test_certificate_body_is_rejected_outside_the_public_key_field() -> None:
    record = example("U10")
    record["certificate_template_name"] = pem("CERTIFICATE", der("certificate")).decode()
    assert _reason("U10", record) == "certificate_body"


# ---------------------------------------------------------------- U7 e-mail

@pytest.mark.parametrize("deployed, email, ok", [
    (True, "alice@contoso.com", True), (True, None, True), (False, None, True),
    (False, "alice@contoso.com", False),
])
def test_u7_email_only_with_deployed_email_profile(deployed: bool, email: str | None,
                                                   ok: bool) -> None:
    record = example("U7")
    record.update(email_profile_deployed=deployed, email=email)
    if ok:
        validate("U7", record)
    else:
        assert _reason("U7", record) == "email_without_profile"


# ---------------------------------------------------------------- shape and identity

def test_unknown_fields_are_refused_at_every_level() -> None:
    record = example("U9")
    record["serial_number"] = "123"
    assert _reason("U9", record) == "unknown_field"
    record = example("U9")
    record["envelope"]["ip_address"] = "10.0.0.1"
    assert _reason("U9", record) == "unknown_field"


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(device_name=5),
    lambda r: r.pop("device_name"),
    lambda r: r.update(action="EXPLODE"),
    lambda r: r["envelope"].update(tenant_id=TENANT.upper()),
    lambda r: r["envelope"].update(tenant_id="not-a-uuid"),
    lambda r: r["envelope"].update(event_time=datetime(2024, 1, 1)),  # naive
    lambda r: r["envelope"].update(event_time=True),
    lambda r: r.update(last_connection_time=1 << 64),
    lambda r: r.update(friendly_name=b"bytes"),
], ids=["type", "missing", "enum", "uuid-case", "uuid", "naive-dt", "bool-ts", "range", "bytes"])
def test_schema_mismatches(mutate) -> None:
    record = example("U9")
    mutate(record)
    assert _reason("U9", record) == "schema_mismatch"


def test_not_a_record_at_all() -> None:
    assert _reason("U9", None) == "schema_mismatch"  # type: ignore[arg-type]
    assert _reason("U9", ["x"]) == "schema_mismatch"  # type: ignore[arg-type]


def test_decoded_representation_validates() -> None:
    record = example("U9")
    record["envelope"]["tenant_id"] = uuid.UUID(TENANT)
    record["envelope"]["event_time"] = datetime(2024, 1, 1, tzinfo=timezone.utc)
    validate("U9", record)


def test_kind_must_match_envelope() -> None:
    record = example("U9")
    record["envelope"]["kind"] = "U8"
    assert _reason("U9", record) == "kind_mismatch"


def test_unknown_kind() -> None:
    assert _reason("U99", example("U9")) == "unknown_kind"


@pytest.mark.parametrize("kind, field", [("U9", "device_id"), ("device_session", "device_id"),
                                         ("device_command", "device_id"), ("U7", "user_id"),
                                         ("R5", "user_id"), ("device_unenrolled", "device_id")])
def test_required_envelope_ids(kind: str, field: str) -> None:
    record = example(kind)
    record["envelope"][field] = None
    assert _reason(kind, record) == "missing_identifier"


def test_conditional_ids_of_u6_and_r3() -> None:
    record = example("U6")
    record.update(assignment_type="APP_TO_USER")
    record["envelope"]["user_id"] = None
    assert _reason("U6", record) == "missing_identifier"
    record.update(assignment_type="SETTINGS_TO_DEVICE")
    validate("U6", record)
    record = example("R3")
    record.update(scope="DEVICE")
    record["envelope"]["device_id"] = None
    assert _reason("R3", record) == "missing_identifier"
    record.update(scope="TENANT")
    validate("R3", record)


@pytest.mark.parametrize("country, ok", [("DE", True), ("US", True), ("de", False),
                                         ("DEU", False), ("", False), ("1A", False)])
def test_onboarding_country(country: str, ok: bool) -> None:
    record = example("tenant_onboarded")
    record["country"] = country
    if ok:
        validate("tenant_onboarded", record)
    else:
        assert _reason("tenant_onboarded", record) == "invalid_country"


def test_command_arguments() -> None:
    record = example("R2")
    record.update(command="RENAME")
    assert _reason("R2", record) == "invalid_value"
    record.update(new_device_name="Alice's phone")
    validate("R2", record)
    record.update(command="WIPE")
    assert _reason("R2", record) == "invalid_value"
    record = example("device_command")
    record.update(command="RENAME", new_device_name="n")
    validate("device_command", record)


def test_r1_needs_a_section() -> None:
    record = example("R1")
    record["compliance"] = None
    assert _reason("R1", record) == "invalid_value"


def test_reason_codes_are_bounded_metric_labels() -> None:
    assert all(r.isidentifier() and r.islower() and len(r) < 32 for r in REASONS)
    classes = [c for c in vars(e).values()
               if isinstance(c, type) and issubclass(c, ValidationError) and c is not ValidationError]
    assert {c.reason for c in classes} == REASONS


# ---------------------------------------------------------------- redaction

def test_redact_replaces_private_keys_and_keeps_the_rest() -> None:
    record = example("R1")
    record["inventory"] = {"software": [{"name": PRIVATE_PEMS["pkcs8"].decode(), "version": "1"}],
                           "hardware": {"Model": "x"}}
    record["smuggled"] = {"k": [PRIVATE_PEMS["sec1"]]}  # an unknown field is scanned too
    original = copy.deepcopy(record)
    clean = redact("R1", record)
    assert record == original  # a copy; the input is untouched
    assert clean["inventory"]["software"][0] == {"name": REDACTED, "version": "1"}
    assert clean["smuggled"] == {"k": [REDACTED.encode()]}
    assert clean["inventory"]["hardware"] == {"Model": "x"}
    assert clean["envelope"] == record["envelope"]


def test_redact_keeps_opaque_fields_and_public_certificates() -> None:
    record = example("U4")
    record["encrypted_content"] = b"\x00opaque" + PRIVATE_PEMS["pkcs8"]
    assert redact("U4", record)["encrypted_content"] == record["encrypted_content"]
    record = _u10(pem("CERTIFICATE", der("certificate")))
    assert redact("U10", record) == record
    record = _u10(der("ec_private_pkcs8"))  # DER private key: no PEM marker, still found
    assert redact("U10", record)["scep_challenge_encryption_certificate"] == REDACTED.encode()


def test_redact_of_unknown_kind_or_shape_scans_everything() -> None:
    assert redact("nope", {"a": [PRIVATE_PEMS["pkcs1"].decode()]}) == {"a": [REDACTED]}
    assert redact("U9", "just text") == "just text"
    assert redact("U9", PRIVATE_PEMS["pkcs1"].decode()) == REDACTED


# ---------------------------------------------------------------- validate_decoded

@pytest.mark.parametrize("kind", sorted(default_registry().kinds))
def test_validate_decoded_gives_the_verdicts_of_validate(kind: str) -> None:
    """Any record that survives encoding and decoding: both accept it, or both refuse it
    with the same reason and field; private key text planted anywhere the content rules scan
    (any string or bytes, nested in records, arrays and map keys and values) is refused by
    both. Every kind has records accepted and records refused."""
    registry = default_registry()
    spec = registry.spec(kind)
    planted = PRIVATE_PEMS["pkcs8"].decode()
    verdict = _verdict
    outcomes: set[str] = set()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(record=records(spec.expanded), plant=st.booleans(), data=st.data())
    def check(record: dict, plant: bool, data: st.DataObject) -> None:
        make_valid(kind, record, spec)
        places = text_places(spec.expanded, record)
        if plant and places:
            place = data.draw(st.sampled_from(places))
            plant_text(record, place, planted)
        decoded = _decoded(kind, record)
        assert decoded is not None, "a mended record always encodes"
        full = verdict(lambda r: validate(kind, r, registry), decoded)
        fast = verdict(lambda r: validate_decoded(kind, r, registry), decoded)
        assert fast == full
        if plant and places:
            assert full is not None and full.startswith("private_key_material"), full
            outcomes.add("refused")
        else:
            assert full is None, full
            outcomes.add("accepted")

    check()
    assert outcomes == {"accepted", "refused"} or not _has_text(spec), outcomes
    assert "accepted" in outcomes


def _has_text(spec) -> bool:
    """Whether a kind has any place private key text could be planted in."""
    from tests.unit.examples import example
    return bool(text_places(spec.expanded, example(spec.kind)))


def test_every_kind_has_a_place_a_key_could_be_planted_in() -> None:
    """So the property above refuses something of every kind (not only the 17 kinds with a
    top-level text field)."""
    registry = default_registry()
    assert [k for k, spec in registry.kinds.items() if not _has_text(spec)] == []


def _decoded_check(schema: dict):
    from mdmbus.contract.content import compile_decoded_check
    from mdmbus.contract.rules import _check
    return compile_decoded_check(schema, _check)


def test_decoded_check_follows_a_recursive_type() -> None:
    node: dict = {"type": "record", "name": "Node",
                  "fields": [{"name": "label", "type": "string"},
                             {"name": "next", "type": ["null", None]}]}
    node["fields"][1]["type"][1] = node  # expanded references make the cycle
    check = _decoded_check(node)
    check({"label": "a", "next": {"label": "b", "next": None}})
    with pytest.raises(e.PrivateKeyMaterialError):
        check({"label": "a", "next": {"label": PRIVATE_PEMS["sec1"].decode(), "next": None}})


def test_decoded_check_does_not_trust_fields_filled_from_a_default() -> None:
    """A field added with a default is not decoded when the writer lacked it: fastavro hands
    back the JSON default (a str for bytes), which the full check refuses."""
    schema = {"type": "record", "name": "Evolved",
              "fields": [{"name": "name", "type": "string"},
                         {"name": "blob", "type": "bytes", "default": "\u00ff"}]}
    check = _decoded_check(schema)
    check({"name": "x", "blob": b"\xff"})
    with pytest.raises(e.SchemaMismatchError):
        check({"name": "x", "blob": "\u00ff"})
