"""Dead-letter redaction (mdmbus.contract.redact) at the edges where it must be stricter than
validation. A refused record is kept for days; it may have been cut anywhere, so the opening
of a private key too short for validation to look at (validation looks into nothing shorter
than MIN_KEY_BYTES) is still replaced. And in U10's public-key-only field, whatever that field
refuses as private key material is replaced, including a DER private-key outline no key
form of mdmbus.contract.keys names. Expected values are written here by hand."""

from __future__ import annotations

import base64

import pytest

from mdmbus.contract import REDACTED, ValidationError, redact, validate
from mdmbus.contract.keys import MIN_KEY_BYTES
from tests.unit.examples import der, example, pem

#: The first 24 bytes of an RSA PKCS#1 private key (SEQUENCE, version 0, the modulus's
#: header and first bytes): a key cut short, as raw DER and as base64 text.
OPENING_DER = der("rsa_private_pkcs1")[:24]
OPENING_B64 = base64.b64encode(OPENING_DER).decode()
#: SEQUENCE { INTEGER 7, OCTET STRING (48 bytes) }: a version INTEGER opening a SEQUENCE is a
#: private key's outline to the public-key check (PKCS#1, PKCS#8, SEC 1 and PKCS#12 all open
#: that way), though no key form is recognised in it.
PRIVATE_OUTLINE = bytes([0x30, 0x35, 0x02, 0x01, 0x07, 0x04, 0x30]) + bytes(48)
U10_FIELD = "scep_challenge_encryption_certificate"


def test_the_fixtures_are_what_the_tests_say() -> None:
    assert len(OPENING_B64) < MIN_KEY_BYTES and len(OPENING_DER) < MIN_KEY_BYTES
    record = example("U9")
    record["device_name"] = OPENING_B64
    validate("U9", record)  # too short for validation: accepted
    record = example("U10")
    record[U10_FIELD] = PRIVATE_OUTLINE
    with pytest.raises(ValidationError) as caught:
        validate("U10", record)
    assert (caught.value.reason, caught.value.path) == ("private_key_material", U10_FIELD)


def test_the_opening_of_a_key_is_replaced_in_text_of_a_known_field() -> None:
    record = example("U9")
    record["device_name"] = OPENING_B64
    clean = redact("U9", record)
    assert clean["device_name"] == REDACTED
    assert clean["envelope"] == record["envelope"]


@pytest.mark.parametrize("value, replaced", [
    (OPENING_B64, REDACTED),
    (OPENING_B64.encode(), REDACTED.encode()),
    (OPENING_DER, REDACTED.encode()),
    (bytearray(OPENING_DER), REDACTED.encode()),
    ("short clean text", "short clean text"),
    (b"short clean bytes", b"short clean bytes"),
])
def test_the_opening_of_a_key_is_replaced_in_text_and_bytes_outside_the_schema(
        value, replaced) -> None:
    record = example("U9")
    record["smuggled"] = {"deep": [value]}  # an unknown field: no schema node to follow
    clean = redact("U9", record)
    assert clean["smuggled"] == {"deep": [replaced]}
    assert type(clean["smuggled"]["deep"][0]) is type(replaced)


@pytest.mark.parametrize("value", [
    PRIVATE_OUTLINE,
    bytearray(PRIVATE_OUTLINE),
    OPENING_B64.encode(),
    OPENING_DER,
    der("ec_private_pkcs8"),
    pem("PRIVATE KEY", der("ec_private_pkcs8")),
], ids=["outline", "outline-bytearray", "opening-b64", "opening-der", "pkcs8-der", "pkcs8-pem"])
def test_private_material_in_the_public_key_field_is_replaced(value: bytes) -> None:
    record = example("U10")
    record[U10_FIELD] = value
    clean = redact("U10", record)
    assert clean[U10_FIELD] == REDACTED.encode()
    assert {k: v for k, v in clean.items() if k != U10_FIELD} == {
        k: v for k, v in record.items() if k != U10_FIELD}


@pytest.mark.parametrize("value", [
    pem("CERTIFICATE", der("certificate")),
    der("certificate"),
    der("ec_public_spki"),
    pem("PUBLIC KEY", der("ec_public_spki")),
    b"neither a key nor a certificate",
], ids=["cert-pem", "cert-der", "spki-der", "spki-pem", "garbage"])
def test_public_or_clean_content_of_the_public_key_field_is_kept(value: bytes) -> None:
    """Certificates and public keys are not secret, and neither is what holds no key at all
    (refused as not_public_key, kept so the sender can see what they sent)."""
    record = example("U10")
    record[U10_FIELD] = bytearray(value)
    kept = redact("U10", record)[U10_FIELD]
    assert kept == value and type(kept) is bytes
