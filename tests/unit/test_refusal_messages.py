"""What a producer is told when a record is refused: the reason code, the field at fault and the
message, exactly, for every rule of the contract; and the pipeline, reading the same record as
bytes, refuses it with the same reason, field and message, and keeps the record for the dead
letter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from mdmbus.contract import ValidationError, default_registry, validate
from mdmbus.contract.verdict import Refused, check_message
from tests.unit.examples import der, example, pem

REGISTRY = default_registry()
UPPER_ID = "0B9F8A3E-5C1D-4E2F-9A7B-1C2D3E4F5A6B"
ONLY_U10 = "holds a certificate body; only the public-key-only field of U10 may carry a certificate"


def _record(kind: str, **changes: Any) -> dict:
    """example(kind) with fields changed; ``env_<name>`` changes the envelope's <name>."""
    record = example(kind)
    for name, value in changes.items():
        if name.startswith("env_"):
            record["envelope"][name[4:]] = value
        else:
            record[name] = value
    return record


def _without(kind: str, name: str) -> dict:
    record = example(kind)
    del record[name]
    return record


#: (kind, record, reason, field, message); the pipeline column says whether the record can be
#: encoded with the defect intact (a wrongly typed value cannot be written as Avro at all).
CASES = {
    "upper-case uuid": ("U9", lambda: _record("U9", env_record_id=UPPER_ID), "schema_mismatch",
                        "envelope.record_id",
                        f"expected a lower-case canonical uuid, got '{UPPER_ID}'", True),
    "uuid not text": ("U9", lambda: _record("U9", env_record_id=5), "schema_mismatch",
                      "envelope.record_id", "expected a lower-case canonical uuid, got 5", False),
    "string of another type": ("U9", lambda: _record("U9", device_name=5), "schema_mismatch",
                               "device_name", "expected a string, got int", False),
    "datetime without zone": ("U9", lambda: _record("U9", env_event_time=datetime(2024, 5, 1)),
                              "schema_mismatch", "envelope.event_time",
                              "datetime without a time zone", False),
    "int out of range": ("U10", lambda: _record("U10", renewal_threshold_percent=2**31),
                         "schema_mismatch", "renewal_threshold_percent",
                         "expected an Avro int, got 2147483648", True),
    "boolean for an int": ("U10", lambda: _record("U10", renewal_threshold_percent=True),
                           "schema_mismatch", "renewal_threshold_percent",
                           "expected an Avro int, got True", False),
    "text for a long": ("U9", lambda: _record("U9", env_event_time="2024"), "schema_mismatch",
                        "envelope.event_time", "expected an Avro long, got '2024'", False),
    "text for bytes": ("U4", lambda: _record("U4", icon="abc"), "schema_mismatch", "icon",
                       "expected bytes, got str", False),
    "text for a boolean": ("U7", lambda: _record("U7", email_profile_deployed="yes"),
                           "schema_mismatch", "email_profile_deployed",
                           "expected a boolean, got 'yes'", False),
    "enum symbol": ("U9", lambda: _record("U9", device_type="TOASTER"), "schema_mismatch",
                    "device_type",
                    "'TOASTER' is not one of WINDOWS_PHONE, WINDOWS, IOS, ANDROID, OTHER", False),
    "not an array": ("U8", lambda: _record("U8", history="x"), "schema_mismatch", "history",
                     "expected an array, got str", False),
    "array item": ("U8", lambda: _record("U8", history=[{"state": "INSTALLED", "at": "x"}]),
                   "schema_mismatch", "history[0].at", "expected an Avro long, got 'x'", False),
    "not a map": ("R1", lambda: _record("R1", inventory={"software": [], "hardware": []}),
                  "schema_mismatch", "inventory.hardware", "expected a map, got list", False),
    "not a record": ("R1", lambda: _record("R1", compliance="x"), "schema_mismatch",
                     "compliance", "expected a record (DeviceCompliance), got str", False),
    "unknown field": ("U9", lambda: _record("U9", colour="red", size=1), "unknown_field", "",
                      "fields not in EnrolledDevice: colour, size", False),
    "missing field": ("U9", lambda: _without("U9", "device_name"), "schema_mismatch",
                      "device_name", "missing, and the field has no default", False),
    "opaque field of another type": ("U4", lambda: _record("U4", encrypted_content="x"),
                                     "schema_mismatch", "encrypted_content",
                                     "opaque field expects bytes, got str", False),
    "required id": ("U9", lambda: _record("U9", env_device_id=None), "missing_identifier",
                    "envelope.device_id", "must be set: U9 records are about one device", True),
    "U6 app to a user": ("U6", lambda: _record("U6", env_user_id=None), "missing_identifier",
                         "envelope.user_id", "must be set: an app is assigned to a user", True),
    "U6 settings to a device": ("U6", lambda: _record("U6", assignment_type="SETTINGS_TO_DEVICE",
                                                      env_device_id=None),
                                "missing_identifier", "envelope.device_id",
                                "must be set: settings are applied to a device", True),
    "U7 e-mail": ("U7", lambda: _record("U7", email=""), "email_without_profile", "email",
                  "e-mail is only sent for users with an enabled and deployed e-mail profile",
                  True),
    "R1 without a section": ("R1", lambda: _record("R1", compliance=None), "invalid_value", "",
                             "at least one of inventory, compliance, app_installation, "
                             "device_status, sideloading_key_assignment must be set", True),
    "R2 rename": ("R2", lambda: _record("R2", command="RENAME"), "invalid_value",
                  "new_device_name", "set exactly when command is RENAME", True),
    "R2 app request": ("R2", lambda: _record("R2", command="APP_REQUEST"), "invalid_value",
                       "app_id", "set exactly when command is APP_REQUEST", True),
    "R3 about a user": ("R3", lambda: _record("R3", scope="USER", env_user_id=None),
                        "missing_identifier", "envelope.user_id",
                        "must be set: the error is about a user", True),
    "R3 about a device": ("R3", lambda: _record("R3", scope="DEVICE", env_device_id=None),
                          "missing_identifier", "envelope.device_id",
                          "must be set: the error is about a device", True),
    "command argument": ("device_command", lambda: _record("device_command", new_device_name="x"),
                         "invalid_value", "new_device_name", "set exactly when command is RENAME",
                         True),
    "country": ("tenant_onboarded", lambda: _record("tenant_onboarded", country="DEU"),
                "invalid_country", "country",
                "'DEU' is not an ISO 3166-1 alpha-2 code (two upper-case letters)", True),
    "kind": ("U9", lambda: _record("U9", env_kind="U7"), "kind_mismatch", "envelope.kind",
             "is 'U7', record produced as 'U9'", True),
    "private key": ("U9", lambda: _record("U9", device_name=pem("EC PRIVATE KEY",
                                                                 der("ec_private_sec1")).decode()),
                    "private_key_material", "device_name", "holds a PEM private key", True),
    **{f"{label} key": ("U9", lambda label=label, name=name: _record(
        "U9", device_name=pem(label, der(name)).decode()), "private_key_material", "device_name",
        "holds a PEM private key", True)
       for label, name in (("RSA PRIVATE KEY", "rsa_private_pkcs1"),
                           ("PRIVATE KEY", "ec_private_pkcs8"),
                           ("ENCRYPTED PRIVATE KEY", "ec_private_encrypted_pkcs8"))},
    "certificate": ("U9", lambda: _record("U9", os=pem("CERTIFICATE", der("certificate")).decode()),
                    "certificate_body", "os", ONLY_U10, True),
    "certificate in bytes": ("U4", lambda: _record("U4", icon=pem("X509 CERTIFICATE",
                                                                  der("certificate"))),
                             "certificate_body", "icon", ONLY_U10, True),
    "public-key field of another type": ("U10", lambda: _record(
        "U10", scep_challenge_encryption_certificate="x"), "schema_mismatch",
        "scep_challenge_encryption_certificate", "expected bytes, got str", False),
    "private key in the public-key field": ("U10", lambda: _record(
        "U10", scep_challenge_encryption_certificate=der("ec_private_pkcs8")),
        "private_key_material", "scep_challenge_encryption_certificate",
        "holds private key material; only a public key or a certificate is allowed", True),
    "no key in the public-key field": ("U10", lambda: _record(
        "U10", scep_challenge_encryption_certificate=b"garbage"), "not_public_key",
        "scep_challenge_encryption_certificate",
        "is neither a PEM/DER public key nor a certificate", True),
    "unknown kind": ("U99", dict, "unknown_kind", "", "unknown kind 'U99'", False),
    "not a mapping": ("U9", list, "schema_mismatch", "",
                      "expected a record (EnrolledDevice), got list", False),
}


@pytest.mark.parametrize("case", CASES)
def test_the_producer_is_told_the_reason_the_field_and_what_is_wrong(case: str) -> None:
    kind, make, reason, field, message, _ = CASES[case]
    with pytest.raises(ValidationError) as caught:
        validate(kind, make())
    assert (caught.value.reason, caught.value.path) == (reason, field)
    assert str(caught.value) == (f"{field}: {message}" if field else message)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][5]])
def test_the_pipeline_refuses_the_bytes_alike_and_keeps_the_record(case: str) -> None:
    kind, make, reason, field, message, _ = CASES[case]
    record = make()
    value = REGISTRY.codec.encode(kind, record)
    verdict = check_message(REGISTRY, value, REGISTRY.key(kind, record) if record["envelope"][
        REGISTRY.spec(kind).key_field] else b"", None)
    assert isinstance(verdict, Refused)
    assert (verdict.reason, verdict.path) == (reason, field)
    assert verdict.error == (f"{field}: {message}" if field else message)
    assert verdict.decoded is not None and verdict.decoded.kind == kind
    assert verdict.decoded.record["envelope"]["record_id"] == REGISTRY.codec.decode(
        value).record["envelope"]["record_id"]
