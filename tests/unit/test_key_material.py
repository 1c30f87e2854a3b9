"""Telling key material apart without a crypto library (mdmbus.contract.keys), at its edges:
DER lengths in every form, elements that end exactly at the end of the data or run past it,
PEM blocks that do not close, bodies that are not strict base64, and words that merely mention
a key or a certificate."""

from __future__ import annotations

import pytest

from mdmbus.contract import ValidationError, validate
from mdmbus.contract.keys import (NOT_PUBLIC, PRIVATE, has_certificate_marker,
                                  has_private_key_marker, public_key_problem)
from tests.keyforms import key_forms
from tests.unit.examples import der, example, pem

SPKI_OUTLINE = bytes([0x30, 0x04, 0x30, 0x00, 0x03, 0x00])  # SEQUENCE { SEQUENCE, BIT STRING }


def _indefinite() -> bytes:
    """A SubjectPublicKeyInfo outline whose outer length is BER's indefinite form (0x80)."""
    content = bytes([0x30, 120]) + bytes(120) + bytes([0x03, 4]) + bytes(4)
    assert len(content) == 128
    return bytes([0x30, 0x80]) + content


@pytest.mark.parametrize("data, verdict", [
    (SPKI_OUTLINE, None),  # the last element ends exactly at the end of the data
    (bytes([0x30, 0x81, 0x04]) + SPKI_OUTLINE[2:], None),  # long-form length, 1 byte
    (bytes([0x30, 0x84, 0, 0, 0, 4]) + SPKI_OUTLINE[2:], None),  # long-form length, 4 bytes
    (bytes([0x30, 0x85, 0, 0, 0, 0, 4]) + SPKI_OUTLINE[2:], NOT_PUBLIC),  # 5 length bytes
    (bytes([0x30, 0x05, 0x30, 0x00, 0x03, 0x81, 0x00]), None),  # last length ends the data
    (_indefinite(), NOT_PUBLIC),  # BER indefinite length: not DER
    (bytes([0x30, 0x04, 0x30, 0x80, 0x03, 0x00]), NOT_PUBLIC),  # indefinite inner element
    (bytes([0x30, 0x04, 0x30, 0x00, 0x03, 0x05]), NOT_PUBLIC),  # inner element runs past
    (bytes([0x30, 0x04, 0x30, 0x00, 0x03, 0x82]), NOT_PUBLIC),  # truncated length bytes
    (SPKI_OUTLINE + b"\xff", NOT_PUBLIC),  # trailing bytes after the key
    (bytes([0x31, 0x04, 0x30, 0x00, 0x03, 0x00]), NOT_PUBLIC),  # a SET, not a SEQUENCE
    (bytes([0x30]), NOT_PUBLIC),  # a header cut short
    (bytes([0x30, 0x03, 0x02, 0x01, 0x00]), PRIVATE),  # SEQUENCE { INTEGER version, ... }
    (bytes([0x30, 0x04, 0x30, 0x00, 0x04, 0x00]), PRIVATE),  # EncryptedPrivateKeyInfo
    (bytes([0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]), None),  # RSAPublicKey
])
def test_der_outlines(data: bytes, verdict: str | None) -> None:
    assert public_key_problem(data) == verdict


def test_a_pem_block_that_does_not_end_is_not_a_public_key() -> None:
    cert = pem("CERTIFICATE", der("certificate"))
    assert public_key_problem(cert) is None
    assert public_key_problem(cert + b"-----BEGIN CERTIFICATE-----\nAAAA\n") == NOT_PUBLIC


def test_a_pem_body_that_is_not_strict_base64_is_not_a_public_key() -> None:
    cert = pem("CERTIFICATE", der("certificate"))
    lines = cert.split(b"\n")
    lines[1] = lines[1][:10] + b"!" + lines[1][10:]
    assert public_key_problem(b"\n".join(lines)) == NOT_PUBLIC


@pytest.mark.parametrize("text", [
    "rotate the PRIVATE KEY of the VPN gateway monthly",
    "-----END CERTIFICATE-----",
    "CERTIFICATE-----",
])
def test_words_about_keys_are_not_key_material(text: str) -> None:
    record = example("U9")
    record["device_name"] = text
    validate("U9", record)
    u4 = example("U4")
    u4["icon"] = text.encode()
    validate("U4", u4)


@pytest.mark.parametrize("label", ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"])
def test_a_certificate_in_a_bytes_field_is_refused(label: str) -> None:
    record = example("U4")
    record["icon"] = pem(label, der("certificate"))
    with pytest.raises(ValidationError) as caught:
        validate("U4", record)
    assert caught.value.reason == "certificate_body"


@pytest.mark.parametrize("name", ["rsa_private_pkcs1", "ec_private_sec1", "ec_private_pkcs8",
                                  "ec_private_encrypted_pkcs8"])
def test_private_keys_as_der_are_private(name: str) -> None:
    """PKCS#1 opens INTEGER, INTEGER, INTEGER...; SEC 1 INTEGER, OCTET STRING...; PKCS#8
    INTEGER, SEQUENCE, OCTET STRING; EncryptedPrivateKeyInfo SEQUENCE, OCTET STRING."""
    assert public_key_problem(der(name)) == PRIVATE


@pytest.mark.parametrize("name", ["rsa-pkcs12", "ec-pkcs12-encrypted"])
def test_pkcs12_as_der_is_private(name: str) -> None:
    """PFX: INTEGER 3, SEQUENCE (authSafe), SEQUENCE (macData)."""
    data = next(f.data for f in key_forms() if f.name == f"{name}/der")
    assert public_key_problem(data) == PRIVATE


@pytest.mark.parametrize("label", ["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "EC PARAMETERS"])
@pytest.mark.parametrize("name", ["rsa_private_pkcs1", "ec_private_pkcs8",
                                  "ec_private_encrypted_pkcs8"])
def test_a_private_key_under_a_public_label_is_private(label: str, name: str) -> None:
    assert public_key_problem(pem(label, der(name))) == PRIVATE


@pytest.mark.parametrize("blocks, verdict", [
    ([("CERTIFICATE", "certificate"), ("PUBLIC KEY", "ec_public_spki")], None),
    ([("RSA PUBLIC KEY", "rsa_public_pkcs1")], None),
    ([("EC PARAMETERS", "ec_public_spki")], NOT_PUBLIC),  # a public DER under another label
    ([("CERTIFICATE", "certificate"), ("EC PARAMETERS", "ec_public_spki")], NOT_PUBLIC),
    ([("EC PARAMETERS", "ec_public_spki"), ("CERTIFICATE", "certificate")], NOT_PUBLIC),
    # a private key after a block that is not public: still private, whatever came first
    ([("EC PARAMETERS", "ec_public_spki"), ("PUBLIC KEY", "ec_private_pkcs8")], PRIVATE),
    ([("CERTIFICATE", "certificate"), ("CERTIFICATE", "rsa_private_pkcs1")], PRIVATE),
])
def test_pem_chains(blocks: list[tuple[str, str]], verdict: str | None) -> None:
    data = b"".join(pem(label, der(name)) for label, name in blocks)
    assert public_key_problem(data) == verdict
    assert public_key_problem(bytearray(data)) == verdict


@pytest.mark.parametrize("text, private, certificate", [
    ("-----BEGIN PRIVATE KEY-----", True, False),
    ("-----BEGIN RSA PRIVATE KEY-----", True, False),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----", True, False),
    ("-----END PRIVATE KEY-----", False, False),  # the END line alone: no header
    ("BEGIN PRIVATE KEY", False, False),
    ("a PRIVATE KEY-----", False, False),
    ("-----BEGIN private key-----", False, False),
    ("-----BEGIN CERTIFICATE-----", False, True),
    ("-----BEGIN TRUSTED CERTIFICATE-----", False, True),
    ("-----BEGIN CERTIFICATE REQUEST-----", False, False),
    ("CERTIFICATE-----", False, False),
])
def test_pem_markers(text: str, private: bool, certificate: bool) -> None:
    for value in (text, text.encode(), "x " + text + " y", ("x " + text + " y").encode()):
        assert has_private_key_marker(value) is private, value
        assert has_certificate_marker(value) is certificate, value
