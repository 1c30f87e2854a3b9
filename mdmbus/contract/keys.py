"""Recognising key material without a crypto library: PEM markers and DER outlines.

Minimisation (docs/design.md rule 5) rejects private key material anywhere and certificate bodies
outside U10's public-key field. We never need to *use* a key, only to tell what kind of object a
blob is, so reading PEM labels and the first level of a DER SEQUENCE is enough:

- ``SEQUENCE { SEQUENCE, BIT STRING }``: SubjectPublicKeyInfo (public key);
- ``SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }``: X.509 certificate (public key only);
- ``SEQUENCE { INTEGER, INTEGER }``: PKCS#1 RSAPublicKey;
- ``SEQUENCE { INTEGER version, ... }`` otherwise: PKCS#1/PKCS#8/SEC 1 private key, PKCS#12;
- ``SEQUENCE { SEQUENCE, OCTET STRING }``: PKCS#8 EncryptedPrivateKeyInfo (still a private key).
"""

from __future__ import annotations

import base64
import binascii
import re

from mdmbus.contract.limits import CERTIFICATE_PEM, PRIVATE_KEY_PEM, PUBLIC_PEM_LABELS

__all__ = ["has_private_key_marker", "has_certificate_marker", "public_key_problem",
           "PRIVATE", "NOT_PUBLIC"]

#: public_key_problem() results (also ValidationError reason codes).
PRIVATE = "private_key_material"
NOT_PUBLIC = "not_public_key"

_PRIVATE_B = PRIVATE_KEY_PEM
_PRIVATE_S = re.compile(PRIVATE_KEY_PEM.pattern.decode("ascii"))
_CERT_B = CERTIFICATE_PEM
_CERT_S = re.compile(CERTIFICATE_PEM.pattern.decode("ascii"))
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)

_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING = 0x30, 0x02, 0x03, 0x04


def has_private_key_marker(value: str | bytes) -> bool:
    """True if ``value`` holds a PEM private key header (any algorithm, encrypted or not)."""
    if isinstance(value, str):
        return "PRIVATE KEY" in value and _PRIVATE_S.search(value) is not None
    return b"PRIVATE KEY" in value and _PRIVATE_B.search(value) is not None


def has_certificate_marker(value: str | bytes) -> bool:
    """True if ``value`` holds a PEM certificate header."""
    if isinstance(value, str):
        return "CERTIFICATE-----" in value and _CERT_S.search(value) is not None
    return b"CERTIFICATE-----" in value and _CERT_B.search(value) is not None


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError if broken."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER header")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("DER element longer than its data")
    return tag, pos, pos + length


def _der_problem(der: bytes) -> str | None:
    try:
        tag, start, end = _tlv(der, 0)
        if tag != _SEQUENCE or end != len(der):
            return NOT_PUBLIC
        children = []
        pos = start
        while pos < end:
            child, _, pos = _tlv(der, pos)
            children.append(child)
    except ValueError:
        return NOT_PUBLIC
    if children == [_SEQUENCE, _BIT_STRING] or children == [_SEQUENCE, _SEQUENCE, _BIT_STRING]:
        return None  # SubjectPublicKeyInfo, or a certificate
    if children == [_INTEGER, _INTEGER]:
        return None  # PKCS#1 RSAPublicKey (modulus, exponent)
    if children[:1] == [_INTEGER] or children == [_SEQUENCE, _OCTET_STRING]:
        return PRIVATE
    return NOT_PUBLIC


def public_key_problem(data: bytes) -> str | None:
    """None if ``data`` is only public: PEM or DER of a public key or certificate(s).

    Otherwise :data:`PRIVATE` (any private key, even encrypted, or a PKCS#12 bundle) or
    :data:`NOT_PUBLIC` (not recognisable as a public key or certificate).
    """
    if has_private_key_marker(data):
        return PRIVATE
    if b"-----BEGIN" not in data:
        return _der_problem(bytes(data))
    blocks = _PEM_BLOCK.findall(data)
    if not blocks or len(blocks) != data.count(b"-----BEGIN"):
        return NOT_PUBLIC
    worst = None
    for label, body in blocks:
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            return NOT_PUBLIC
        problem = _der_problem(der)
        if problem == PRIVATE:
            return PRIVATE  # whatever its label says
        if label not in PUBLIC_PEM_LABELS:
            problem = NOT_PUBLIC
        worst = worst or problem
    return worst
