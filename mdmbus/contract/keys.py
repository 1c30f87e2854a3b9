"""Recognising key material without a crypto library: PEM markers and DER outlines.

Minimisation (docs/design.md rule 5) refuses private key material anywhere and certificate bodies
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
           "private_key_form", "holds_private_key", "MIN_KEY_BYTES",
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


# ---------------------------------------------------------------- unarmoured private keys
#
# A private key without PEM armour is DER (PKCS#1, PKCS#8 plain or encrypted, SEC 1, PKCS#12),
# possibly base64 or hex encoded, possibly broken into lines. What tells it apart from public
# keys and certificates is the opening of its outer SEQUENCE:
#
# - ``INTEGER 0`` then ``INTEGER`` (the RSA/DSA modulus): PKCS#1 (or DSA) private key;
# - ``INTEGER 0|1`` then ``SEQUENCE { OID`` (the key algorithm): PKCS#8 PrivateKeyInfo;
# - ``INTEGER 1`` then ``OCTET STRING`` (the secret scalar): SEC 1 EC private key;
# - ``INTEGER 3`` then ``SEQUENCE { OID pkcs7-data|signedData``: PKCS#12 PFX;
# - ``SEQUENCE { OID`` of a PKCS#5 or PKCS#12 password-based scheme: EncryptedPrivateKeyInfo.
#
# A public key opens ``SEQUENCE { SEQUENCE { OID key algorithm } , BIT STRING }`` or
# ``SEQUENCE { INTEGER modulus, ...}``, a certificate ``SEQUENCE { SEQUENCE { [0] ...``: none
# of them matches.

#: The fewest bytes any private key takes in any encoding (an Ed25519 PKCS#8 key is 48 bytes of
#: DER; its base64 is 64 characters): a shorter value cannot hold a whole one.
MIN_KEY_BYTES = 48

_PBE_OIDS = (bytes.fromhex("2a864886f70d0105"),     # 1.2.840.113549.1.5: PKCS#5 (PBES1/2)
             bytes.fromhex("2a864886f70d010c01"))   # 1.2.840.113549.1.12.1: PKCS#12 PBE
_PKCS7_OID = bytes.fromhex("2a864886f70d0107")      # 1.2.840.113549.1.7: PKCS#7 content types

#: Where a DER private key may start: SEQUENCE, a length of 40 bytes or more (or BER's
#: indefinite length, 0x80: Java keystores write PKCS#12 files so), then a version INTEGER 0,
#: 1 or 3, or a SEQUENCE opening with an OID. The Python check below decides.
_DER_START = re.compile(
    rb"\x30(?:[\x28-\x7f]|\x80|\x81[\x80-\xff]|\x82[\x00-\xff]{2}|\x83[\x00-\xff]{3})"
    rb"(?:\x02\x01[\x00\x01\x03]|\x30(?:[\x00-\x80]|\x81[\x00-\xff])\x06)")
#: Where base64 (standard or URL-safe) of a DER SEQUENCE of 40 bytes or more may start (0x30
#: 0x28..0x8f is "MC".."MI"), with the characters that follow (line breaks allowed): enough
#: for the telling bytes, fewer where the data ends. Overlapping, so "MIIMIIE..." is tried at
#: both starts.
_B64_START = re.compile(rb"M[C-I]")
_B64_TAIL = re.compile(rb"(?:[\r\n\t ]*[A-Za-z0-9+/\-_]){6,42}")
#: Where hex of a DER SEQUENCE may start, with what follows (spaces, line breaks, colons
#: allowed between digits).
_HEX_START = re.compile(rb"30")
_HEX_TAIL = re.compile(rb"(?:[\s:]*[0-9A-Fa-f]){8,62}")
_SPACE = re.compile(rb"[\s:]+")
_URLSAFE = bytes.maketrans(b"-_", b"+/")

#: Key files recognised by a word in clear: PEM armour of any private key (its END line too),
#: OpenSSH's and PuTTY's own formats, and the opening of an OpenSSH key's base64 body.
_CLEAR_WORDS = (b"PRIVATE KEY-----", b"openssh-key-v1\x00", b"PuTTY-User-Key-File-",
                b"b3BlbnNzaC1rZXktdjE")


def _b64_forms(word: bytes) -> list[bytes]:
    """The base64 characters that encode ``word`` whatever its offset in the encoded data."""
    forms = []
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + word)
        first = -(-shift * 8 // 6)  # the first character made of the word's bits only
        last = (shift + len(word)) * 8 // 6  # one past the last such character
        forms.append(text[first:last])
    return forms


#: A whole PEM key file base64 encoded (three alignments; each holds "LS0t", base64 of "---").
_B64_WORDS = tuple(_b64_forms(b"PRIVATE KEY-----"))
#: A whole key file hex encoded (lower case; each holds the digit 0).
_HEX_WORDS = (b"PRIVATE KEY-----".hex().encode(), b"openssh-key-v1\x00".hex().encode())


def _head(data: bytes, pos: int) -> tuple[int, int, int | None]:
    """(tag, content start, declared length) of the DER header at ``pos``; IndexError if the
    data ends inside it. The content need not be all there (a key may be cut short). A
    constructed value (a SEQUENCE) may have BER's indefinite length: None."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, first
    count = first & 0x7F
    if count == 0 and tag & 0x20:
        return tag, pos + 2, None
    if count == 0 or count > 4:
        raise ValueError("not a DER length")
    if pos + 2 + count > len(data):
        raise IndexError("header cut short")
    return tag, pos + 2 + count, int.from_bytes(data[pos + 2:pos + 2 + count], "big")


def _opens_private_key(data: bytes, pos: int, cut_ok: bool) -> bool:
    """True if the DER at ``pos`` opens a private key structure (see above). ``cut_ok``: data
    that ends before the telling bytes counts as a key (a fragment of a message cut short)."""
    try:
        tag, start, length = _head(data, pos)
        if tag != 0x30 or length is not None and length < 40:
            return False
        tag, inner, size = _head(data, start)
        if tag == 0x02:
            if size != 1:
                return False
            version = data[inner]
            tag, nxt, size = _head(data, inner + 1)
            if version == 0 and tag == 0x02:
                return size is not None and size >= 16  # PKCS#1 / DSA: the modulus follows
            if version == 1 and tag == 0x04:
                return size is not None and size >= 16  # SEC 1: the secret scalar
            if version in (0, 1) and tag == 0x30:
                return data[nxt] == 0x06  # PKCS#8: SEQUENCE { OID key algorithm, ... }
            if version == 3 and tag == 0x30:
                tag, oid, size = _head(data, nxt)
                seen = data[oid:oid + len(_PKCS7_OID)]
                return tag == 0x06 and (seen == _PKCS7_OID or cut_ok and len(seen) < len(
                    _PKCS7_OID) and _PKCS7_OID.startswith(seen))
            return False
        if tag == 0x30:  # EncryptedPrivateKeyInfo: SEQUENCE { OID of a PBE scheme, ... }
            tag, oid, size = _head(data, inner)
            if tag != 0x06 or size is None:
                return False
            seen = data[oid:oid + size]
            if cut_ok and len(seen) < size:
                return any(p.startswith(seen) or seen.startswith(p) for p in _PBE_OIDS)
            return any(seen.startswith(p) for p in _PBE_OIDS)
        return False
    except IndexError:
        return cut_ok
    except ValueError:
        return False


def _der_key_in(data: bytes, cut_ok: bool) -> bool:
    return any(_opens_private_key(data, m.start(), cut_ok) for m in _DER_START.finditer(data))


def _b64_key_in(data: bytes, cut_ok: bool) -> bool:
    for start in _B64_START.finditer(data):
        m = _B64_TAIL.match(data, start.end())
        if m is None:
            continue
        text = b"M" + _SPACE.sub(b"", data[start.start() + 1:m.end()]).translate(_URLSAFE)
        chunk = text[:len(text) // 4 * 4]
        try:
            der = base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            continue
        if _opens_private_key(der, 0, cut_ok):
            return True
    return False


def _hex_key_in(data: bytes, cut_ok: bool) -> bool:
    for start in _HEX_START.finditer(data):
        m = _HEX_TAIL.match(data, start.end())
        if m is None:
            continue
        text = b"30" + _SPACE.sub(b"", data[start.end():m.end()])
        if _opens_private_key(bytes.fromhex(text[:len(text) // 2 * 2].decode("ascii")), 0,
                              cut_ok):
            return True
    return False


def _armour_in(data: bytes) -> bool:
    if b"-" in data and (b"PRIVATE KEY-----" in data or _PRIVATE_B.search(data)
                         or b"openssh-key-v1\x00" in data or b"PuTTY-User-Key-File-" in data):
        return True
    if b"b3BlbnNzaC1rZXktdjE" in data:
        return True
    return b"LS0t" in data and (_B64_WORDS[0] in data or _B64_WORDS[1] in data
                                or _B64_WORDS[2] in data)


def _hex_word_in(data: bytes) -> bool:
    lower = data.lower()
    return _HEX_WORDS[0] in lower or _HEX_WORDS[1] in lower


def private_key_form(value: str | bytes | bytearray, *, fragment: bool = False) -> str | None:
    """Which form of private key material ``value`` holds anywhere in it, or None: ``"pem"``
    (armour, or a key file's magic, in clear, base64 or hex), ``"der"``, ``"base64"`` or
    ``"hex"`` (a DER private key, raw or encoded, line breaks allowed).

    ``fragment``: ``value`` may be cut anywhere (the raw bytes of a message that could not be
    decoded); a private key's opening cut short still counts, and no length is too short to
    look at. Otherwise a value shorter than :data:`MIN_KEY_BYTES` is not looked into: the
    verdict on short text costs one comparison.
    """
    if not fragment and len(value) < MIN_KEY_BYTES:
        return None
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    if _armour_in(data):
        return "pem"
    # DER holds the tag byte 0x02 (the version INTEGER) or 0x06 (an OID) in its opening, which
    # text never does; hex DER opens with "30", a hex key file holds "2d" ("-"), base64 DER
    # opens with "M".
    if (b"\x02" in data or b"\x06" in data) and _der_key_in(data, fragment):
        return "der"
    if (b"30" in data and _hex_key_in(data, fragment)) or (
            (b"2d" in data or b"2D" in data) and _hex_word_in(data)):
        return "hex"
    if b"M" in data and _b64_key_in(data, fragment):
        return "base64"
    return None


def holds_private_key(value: str | bytes | bytearray, *, fragment: bool = False) -> bool:
    """True if ``value`` holds private key material in any form :func:`private_key_form`
    recognises."""
    return private_key_form(value, fragment=fragment) is not None
