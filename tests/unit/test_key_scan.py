"""The scan for private keys without PEM armour (mdmbus.contract.keys.private_key_form), at its
edges: where a key cut short stops being recognisable, DER lengths in every form, the thresholds
that tell a key from a public structure, the key files known by a word (OpenSSH, PuTTY, a PEM
file encoded whole), and what each form is called.

The oracles are hand-written: DER outlines and byte counts read off the fixed keys of
tests/data/keys (their layout is spelled out beside each figure), the base64 of fixed words, and
keys made with ``cryptography``; none is computed by the code under test.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

from mdmbus.contract.keys import _b64_forms, holds_private_key, private_key_form
from tests.keyforms import key_forms
from tests.unit.examples import der, pem

#: Text before a planted value: makes a whole value longer than the shortest key there is,
#: without a byte any encoding of DER opens with.
LEAD = b"x" * 48 + b" "
#: Text after a hand-written outline, for the same reason.
TAIL = b" " * 48


def _h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# ---------------------------------------------------------------- keys cut short

#: Fixed key -> (DER layout up to what tells it is a key, bytes a whole value needs to show it).
#: A whole value is refused once it holds the telling bytes; a fragment (the raw bytes of a
#: message cut anywhere) from its first recognisable opening on.
TELLING = {
    # SEQUENCE | INTEGER 0 | INTEGER (modulus, long-form length 0x81): the modulus' length.
    "rsa_private_pkcs1": ("30 82 02 5b | 02 01 00 | 02 81 81", 10),
    # SEQUENCE | INTEGER 1 | OCTET STRING (32-byte scalar): the scalar's length.
    "ec_private_sec1": ("30 77 | 02 01 01 | 04 20", 7),
    # SEQUENCE | INTEGER 0 | SEQUENCE { OID: the tag of the OID.
    "ec_private_pkcs8": ("30 81 87 | 02 01 00 | 30 13 | 06", 9),
    # SEQUENCE | SEQUENCE { OID 1.2.840.113549.1.5.13: its first 8 bytes (the PKCS#5 arc).
    "ec_private_encrypted_pkcs8": ("30 81 ec | 30 57 | 06 09 | 2a 86 48 86 f7 0d 01 05", 15),
}
#: The shortest raw fragment the DER scan looks at: SEQUENCE and its length, then INTEGER 0,
#: 1 or 3 (3 bytes), or SEQUENCE, a length and the tag of an OID (3 bytes).
FRAGMENT_OPENING = {"rsa_private_pkcs1": 7, "ec_private_sec1": 5, "ec_private_pkcs8": 6,
                    "ec_private_encrypted_pkcs8": 6}


def test_the_fixed_keys_open_as_written_here() -> None:
    """The tables above describe the files they name."""
    for name, (layout, telling) in TELLING.items():
        opening = _h(layout.replace("|", ""))
        assert der(name).startswith(opening), name
        assert len(opening) == telling, name


@pytest.mark.parametrize("name", sorted(TELLING))
def test_raw_der_cut_short(name: str) -> None:
    key = der(name)
    telling = TELLING[name][1]
    for cut in range(FRAGMENT_OPENING[name], 65):
        assert holds_private_key(key[:cut], fragment=True), (name, cut)
        assert private_key_form(LEAD + key[:cut]) == ("der" if cut >= telling else None), cut


@pytest.mark.parametrize("name", sorted(TELLING))
def test_base64_cut_short(name: str) -> None:
    """Base64 is decoded in groups of 4 characters (3 bytes); the scan looks at 8 characters
    or more. A whole value needs the group that completes the telling bytes."""
    text = base64.b64encode(der(name))
    whole_from = -(-TELLING[name][1] // 3) * 4
    for cut in range(8, 65):
        assert holds_private_key(text[:cut], fragment=True), (name, cut)
        assert private_key_form(LEAD + text[:cut]) == (
            "base64" if cut >= whole_from else None), cut


@pytest.mark.parametrize("name", sorted(TELLING))
def test_hex_cut_short(name: str) -> None:
    """Hex is looked at from 10 digits (5 bytes); a whole value needs 2 digits a byte."""
    text = der(name).hex().encode()
    whole_from = 2 * TELLING[name][1]
    for cut in range(10, 65):
        assert holds_private_key(text[:cut], fragment=True), (name, cut)
        assert holds_private_key(text[:cut].upper(), fragment=True), (name, cut)
        assert private_key_form(LEAD + text[:cut]) == ("hex" if cut >= whole_from else None), cut


@pytest.mark.parametrize("name", ["certificate", "ec_public_spki", "rsa_public_pkcs1"])
def test_public_structures_cut_short_are_no_key(name: str) -> None:
    """A certificate opens SEQUENCE | SEQUENCE (TBSCertificate) | [0]: once the [0] is there
    (10 bytes: base64 from 16 characters, hex from 20 digits), no cut of its opening is a key.
    (Further in, a fragment may end inside something that opens like a key: it then counts.)"""
    data = der(name)
    text, digits = base64.b64encode(data), data.hex().encode()
    assert private_key_form(data) is None
    assert private_key_form(data, fragment=True) is None
    for cut in range(16, 65):
        assert not holds_private_key(text[:cut], fragment=True), cut
    for cut in range(20, 65):
        assert not holds_private_key(digits[:cut], fragment=True), cut


def test_a_sequence_too_short_for_a_key_is_none_even_where_the_data_ends_at_its_length() -> None:
    """SEQUENCE with a long-form length of 32 (under the 40 bytes of the smallest key), the
    fragment ending right after the length bytes: nothing is missing to tell it is no key."""
    assert _h("30 84 00 00 00 20") == base64.b64decode(b"MIQAAAAg")
    assert private_key_form(b"MIQAAAAg", fragment=True) is None
    assert private_key_form(b"3083000020", fragment=True) is None
    # the same with a length that would do: the next header is missing, so it may be a key
    assert private_key_form(b"MIQAAAEg", fragment=True) == "base64"
    assert private_key_form(b"3083000120", fragment=True) == "hex"


def test_short_values_are_looked_into_only_as_fragments() -> None:
    """The smallest whole key, Ed25519 in PKCS#8, is 48 bytes of DER; a whole value shorter
    than that is not scanned, a fragment is."""
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    assert len(key) == 48
    assert key.startswith(_h("30 2e 02 01 00 30 05 06 03 2b 65 70"))
    assert private_key_form(key) == "der"
    assert holds_private_key(key)
    assert private_key_form(key[:47]) is None
    assert holds_private_key(key[:47]) is False
    assert private_key_form(key[:47], fragment=True) == "der"
    assert holds_private_key(key[:47], fragment=True) is True
    opening = base64.b64encode(der("ec_private_pkcs8"))[:16]
    assert holds_private_key(opening) is False
    assert holds_private_key(opening, fragment=True) is True


# ---------------------------------------------------------------- DER lengths and thresholds

#: SEQUENCE (long-form length) | INTEGER 0 | the header of the modulus, then its bytes.
_PKCS1_OPENING = "30 82 01 20 | 02 01 00"


@pytest.mark.parametrize("modulus_header, is_key", [
    ("02 81 81", True),  # 1 length byte
    ("02 82 01 01", True),  # 2 length bytes
    ("02 83 00 01 01", True),  # 3
    ("02 84 00 00 01 01", True),  # 4: the most a DER length may take here
    ("02 85 00 00 00 01 01", False),  # 5: not a DER length
    ("02 80", False),  # BER's indefinite length: never on an INTEGER, not DER
    ("02 81 0f", False),  # a 15-byte modulus: too short for a key
    ("02 10", True),  # a 16-byte one, short-form length
    ("02 0f", False),
])
def test_the_length_of_the_modulus(modulus_header: str, is_key: bool) -> None:
    data = _h(_PKCS1_OPENING.replace("|", "") + modulus_header) + b"\x11" * 60
    forms = ("der", "base64", "hex") if is_key else (None, None, None)
    assert private_key_form(b"key = " + data) == forms[0]
    assert private_key_form(base64.b64encode(data)) == forms[1]
    assert private_key_form(data.hex().encode()) == forms[2]


def _outline(length: int) -> bytes:
    """SEQUENCE { INTEGER 0, INTEGER (16 bytes), INTEGER } whose content is ``length`` bytes."""
    last = length - 23  # what is left for the last INTEGER's content
    body = _h("02 01 00 02 10") + b"\x11" * 16 + bytes([0x02, last]) + b"\x22" * last
    assert len(body) == length
    return bytes([0x30, length]) + body


@pytest.mark.parametrize("length, is_key", [(40, True), (39, False)])
def test_a_key_sequence_holds_40_bytes_or_more(length: int, is_key: bool) -> None:
    data = _outline(length)
    assert private_key_form(b"key = " + data + TAIL) == ("der" if is_key else None)
    assert private_key_form(base64.b64encode(data) + TAIL) == ("base64" if is_key else None)
    assert private_key_form(data.hex().encode() + TAIL) == ("hex" if is_key else None)


@pytest.mark.parametrize("scalar, is_key", [(16, True), (15, False)])
def test_a_sec1_scalar_holds_16_bytes_or_more(scalar: int, is_key: bool) -> None:
    data = _h("30 30 02 01 01") + bytes([0x04, scalar]) + b"\x11" * 45
    assert private_key_form(b"key = " + data) == ("der" if is_key else None)
    assert private_key_form(base64.b64encode(data)) == ("base64" if is_key else None)


@pytest.mark.parametrize("opening, is_key", [
    ("30 30 02 01 00 02 10", True),  # PKCS#1: version 0, modulus
    ("30 30 02 01 01 02 10", False),  # version 1 then an INTEGER: no key structure
    ("30 30 02 01 03 02 10", False),
    ("30 30 02 01 01 04 10", True),  # SEC 1: version 1, secret scalar
    ("30 30 02 01 00 04 10", False),  # version 0 then an OCTET STRING: no key structure
    ("30 30 02 01 00 30 0d 06", True),  # PKCS#8: version 0, SEQUENCE { OID
    ("30 30 02 01 01 30 0d 06", True),  # PKCS#8 v2 (OneAsymmetricKey)
    ("30 30 02 01 03 30 0d 06", False),  # version 3 is PKCS#12's, with a pkcs7 OID
    ("30 30 02 01 00 30 0d 31", False),  # CertificationRequestInfo: version 0, Name (SET)
    ("30 30 02 01 01 06 08", False),  # TSTInfo: version 1, policy OID
    ("30 30 02 02 00 00 02 10", False),  # a two-byte version: not a key's
])
def test_what_follows_the_version(opening: str, is_key: bool) -> None:
    data = _h(opening) + b"\x11" * 60
    assert private_key_form(b"key = " + data) == ("der" if is_key else None)
    assert private_key_form(base64.b64encode(data)) == ("base64" if is_key else None)
    assert private_key_form(data.hex().encode()) == ("hex" if is_key else None)


#: PFX: SEQUENCE | INTEGER 3 | SEQUENCE (authSafe) { OID 1.2.840.113549.1.7.1 (pkcs7-data).
_PFX = "30 82 0a 00 | 02 01 03 | 30 82 09 c0 | 06 09 | 2a 86 48 86 f7 0d 01 07 01 | a0 82 09 b1"


def test_pkcs12_is_known_by_its_version_and_pkcs7_oid() -> None:
    pfx = _h(_PFX.replace("|", "")) + b"\x55" * 40
    assert private_key_form(b"key = " + pfx) == "der"
    pkcs9 = pfx.replace(_h("2a 86 48 86 f7 0d 01 07 01"), _h("2a 86 48 86 f7 0d 01 09 01"))
    assert private_key_form(b"key = " + pkcs9) is None
    version2 = pfx.replace(_h("02 01 03"), _h("02 01 02"), 1)
    assert private_key_form(b"key = " + version2) is None
    assert private_key_form(base64.b64encode(version2)) is None
    assert private_key_form(version2.hex().encode()) is None
    assert private_key_form(base64.b64encode(pfx)) == "base64"
    assert private_key_form(pfx.hex().encode()) == "hex"
    # cut inside the OID: a fragment while what is there is a prefix of it; a whole value
    # needs the OID's 8 bytes (21 in all)
    for cut in range(13, 23):
        assert private_key_form(pfx[:cut], fragment=True) == "der", cut
        assert private_key_form(LEAD + pfx[:cut]) == ("der" if cut >= 21 else None), cut
    assert private_key_form(pkcs9[:21], fragment=True) is None


#: EncryptedPrivateKeyInfo: SEQUENCE | SEQUENCE (algorithm) { OID of a password-based scheme.
_EPKI = "30 82 01 00 | 30 57 | 06 {size:02x} | {oid}"


@pytest.mark.parametrize("oid, is_key", [
    ("2a 86 48 86 f7 0d 01 05 0d", True),  # PBES2 (PKCS#5)
    ("2a 86 48 86 f7 0d 01 05 03", True),  # PBES1 pbeWithMD5AndDES-CBC (PKCS#5)
    ("2a 86 48 86 f7 0d 01 0c 01 03", True),  # pbeWithSHAAnd3-KeyTripleDES-CBC (PKCS#12)
    ("2a 86 48 86 f7 0d 01 01 01", False),  # rsaEncryption: an algorithm, not a PBE scheme
    ("2a 86 48 86 f7 0d 01 0c 0a 01", False),  # PKCS#12 bag types, not a PBE scheme
])
def test_encrypted_private_key_info_is_known_by_its_pbe_oid(oid: str, is_key: bool) -> None:
    size = len(_h(oid))
    data = _h(_EPKI.format(size=size, oid=oid).replace("|", "")) + b"\x55" * 60
    assert private_key_form(b"key = " + data) == ("der" if is_key else None)
    assert private_key_form(base64.b64encode(data)) == ("base64" if is_key else None)


def test_encrypted_private_key_info_cut_inside_its_oid() -> None:
    pbes2 = _h(_EPKI.format(size=9, oid="2a 86 48 86 f7 0d 01 05 0d").replace("|", ""))
    for cut in range(8, 17):
        assert private_key_form(pbes2[:cut], fragment=True) == "der", cut
        assert private_key_form(LEAD + pbes2[:cut]) == ("der" if cut >= 16 else None), cut
    # an OID under the PKCS#5 arc longer than the arc itself, cut after 9 of its 10 bytes
    longer = _h(_EPKI.format(size=10, oid="2a 86 48 86 f7 0d 01 05 0d 01").replace("|", ""))
    assert private_key_form(longer[:-1], fragment=True) == "der"
    # a whole OID that is itself a prefix of the PKCS#5 arc (1.2.840.113549.1): no PBE scheme
    arc = _h(_EPKI.format(size=7, oid="2a 86 48 86 f7 0d 01").replace("|", "")) + b"\x55" * 8
    assert private_key_form(arc, fragment=True) is None
    rsa_oid = _h(_EPKI.format(size=9, oid="2a 86 48 86 f7 0d 01 01 01").replace("|", ""))
    assert private_key_form(rsa_oid, fragment=True) is None
    assert private_key_form(rsa_oid[:-2], fragment=True) == "der"  # a prefix of the PKCS#5 arc


def test_der_is_looked_for_where_either_telling_tag_byte_is() -> None:
    """A PKCS#1 outline holds no OID (no byte 0x06) and an EncryptedPrivateKeyInfo may hold
    no INTEGER (no byte 0x02): each alone is enough to look."""
    only_integer = _outline(40)
    only_oid = _h("30 2c | 30 0b | 06 09 2a 86 48 86 f7 0d 01 05 0d | 04 1d".replace("|", "")
                  ) + b"\x55" * 29
    assert b"\x06" not in only_integer and b"\x02" not in only_oid
    assert private_key_form(b"key = " + only_integer + TAIL) == "der"
    assert private_key_form(b"key = " + only_oid + TAIL) == "der"


# ---------------------------------------------------------------- encodings

def test_base64_broken_anywhere_in_its_opening() -> None:
    text = base64.b64encode(der("ec_private_pkcs8"))
    for width in (2, 3, 4, 5, 16):
        for sep in (b" ", b"\n", b"\r\n", b"\t"):
            broken = sep.join(text[i:i + width] for i in range(0, len(text), width))
            assert private_key_form(broken) == "base64", (width, sep)


def test_url_safe_base64_with_its_own_characters_in_the_opening() -> None:
    """Bytes 0xfb and 0xff make "-" and "_" in URL-safe base64 ("+" and "/" in the standard
    alphabet): the opening is read in either alphabet."""
    data = _h("30 30 02 01 00 02 10") + b"\xfb\xff" * 8 + b"\x11" * 40
    urlsafe = base64.urlsafe_b64encode(data)
    assert b"-" in urlsafe[:40] and b"_" in urlsafe[:40]
    assert private_key_form(urlsafe) == "base64"
    assert private_key_form(base64.b64encode(data)) == "base64"


def test_hex_broken_anywhere_in_its_opening() -> None:
    digits = der("ec_private_pkcs8").hex().encode()
    for width in (2, 3, 8):
        for sep in (b" ", b"\n", b":", b"\r\n"):
            broken = sep.join(digits[i:i + width] for i in range(0, len(digits), width))
            assert private_key_form(broken) == "hex", (width, sep)


def test_a_false_start_before_the_key_does_not_end_the_scan() -> None:
    key = der("ec_private_pkcs8")
    # "MD" opens the base64 of a SEQUENCE, but ":" ends it at once
    assert private_key_form(b"MDM: " + base64.b64encode(key)) == "base64"
    # "MIIB" followed by base64 that decodes to no key
    assert private_key_form(b"MIIBAAAAAAAA " + base64.b64encode(key)) == "base64"
    # "30" opens the hex of a SEQUENCE, but "s" ends it at once
    assert private_key_form(b"retry in 30s: " + key.hex().encode()) == "hex"
    # "30" followed by hex that decodes to no key
    assert private_key_form(b"30000000000000 " + key.hex().encode()) == "hex"
    # raw: a SEQUENCE opening that is no key, then the key
    assert private_key_form(_h("30 30 02 01 01 02 10") + b"\x11" * 20 + key) == "der"


#: Encoding (tests/keyforms.py) -> the form the scan names.
FORM_OF = {"der": "der", "base64": "base64", "base64-lines": "base64", "base64-mime": "base64",
           "base64-crlf": "base64", "base64-urlsafe": "base64", "hex": "hex",
           "hex-upper": "hex", "hex-lines": "hex", "hex-colons": "hex", "pem": "pem",
           "pem-base64": "pem", "in-text": "base64"}


@pytest.mark.parametrize("form", key_forms(), ids=lambda f: f.name)
def test_every_form_is_named(form) -> None:
    expected = FORM_OF[form.name.split("/")[1]]
    assert private_key_form(form.data) == expected
    assert private_key_form(bytearray(form.data)) == expected
    if form.text:
        assert private_key_form(form.data.decode("ascii")) == expected


def test_text_with_a_lone_surrogate_is_scanned() -> None:
    """A str may hold a lone surrogate (JSON allows "\\ud800"); it is scanned, not refused as
    unencodable and not passed over."""
    key = base64.b64encode(der("ec_private_pkcs8")).decode()
    assert private_key_form("\ud800 " + key) == "base64"
    assert private_key_form("\ud800" * 60) is None


# ---------------------------------------------------------------- key files known by a word

def _pem_file() -> bytes:
    return (b"-----BEGIN PRIVATE KEY-----\n"
            + base64.encodebytes(der("ec_private_pkcs8")) + b"-----END PRIVATE KEY-----\n")


def test_the_base64_words_of_a_pem_key_file() -> None:
    """The base64 of "PRIVATE KEY-----" at each of its three offsets in the encoded data,
    written out by hand: only the characters made of the word's own bits."""
    assert _b64_forms(b"PRIVATE KEY-----") == [
        b"UFJJVkFURSBLRVktLS0tL", b"BSSVZBVEUgS0VZLS0tLS", b"QUklWQVRFIEtFWS0tLS0t"]
    assert _b64_forms(b"openssh-key-v1\x00") == [
        b"b3BlbnNzaC1rZXktdjEA", b"9wZW5zc2gta2V5LXYxA", b"vcGVuc3NoLWtleS12MQ"]
    assert _b64_forms(b"ab") == [b"YW", b"Fi", b"hY"]
    # whatever the bytes around the word, its characters are the same
    for shift, word in enumerate(_b64_forms(b"PRIVATE KEY-----")):
        for fill in (b"\x00", b"\xff", b"-", b"Z"):
            assert word in base64.b64encode(fill * shift + b"PRIVATE KEY-----" + fill * 2)


@pytest.mark.parametrize("label, name", [("CERTIFICATE", "certificate"),
                                         ("PUBLIC KEY", "ec_public_spki")])
def test_a_public_pem_file_base64_encoded_is_no_key(label: str, name: str) -> None:
    """Its dashes encode as "LS0t" like a key file's, but no "PRIVATE KEY-----" is there."""
    for lead in (b"", b"#", b"#!"):
        encoded = base64.b64encode(lead + pem(label, der(name)))
        assert b"LS0t" in encoded
        assert private_key_form(encoded) is None


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_a_pem_key_file_base64_encoded_at_any_offset(shift: int) -> None:
    lead = b"#!"[:shift]
    assert private_key_form(base64.b64encode(lead + _pem_file())) == "pem"
    assert private_key_form(base64.urlsafe_b64encode(lead + _pem_file())) == "pem"
    # only the END line of the file, cut from the rest
    assert private_key_form(base64.b64encode(lead + b"\n-----END RSA PRIVATE KEY-----\n"
                                             + b" " * 30)) == "pem"


def test_a_key_file_hex_encoded() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    openssh = base64.b64decode(b"".join(key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()).splitlines()[1:-1]))
    for data in (_pem_file(), openssh, b"my key file: " + b"openssh-key-v1\x00" + b" " * 40):
        assert private_key_form(data.hex().encode()) == "hex"
        assert private_key_form(data.hex().upper().encode()) == "hex"
        assert private_key_form(b"see " + data.hex().encode() + b" (hex)") == "hex"


def test_the_end_line_of_a_key_file_alone() -> None:
    """A key file whose BEGIN line was cut off still ends with its END line."""
    for label in ("PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        end = f"-----END {label}-----\n".encode()
        assert private_key_form(b"x" * 48 + b"\n" + end) == "pem"
        assert private_key_form(b"x" * 48 + b"\n" + end.replace(b"PRIVATE", b"PUBLIC")) is None


def test_openssh_and_putty_key_files() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    armoured = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption())
    assert armoured.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE")
    body = b"".join(armoured.splitlines()[1:-1])
    assert private_key_form(armoured) == "pem"
    assert private_key_form(body) == "pem"  # the base64 body without its armour
    assert private_key_form(base64.b64decode(body)) == "pem"  # the binary file
    putty = (b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: laptop\n"
             b"Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIA\n")
    assert private_key_form(putty) == "pem"
    assert private_key_form(putty.replace(b"PuTTY-User-Key-File", b"PuTTY User Key File")) is None


# ---------------------------------------------------------------- BER: indefinite lengths

#: A PKCS#12 PFX as Java keystores (Bouncy Castle) write it: BER, every SEQUENCE of indefinite
#: length (0x80), closed by end-of-contents octets. Written out by hand: SEQUENCE(indef) {
#: INTEGER 3, SEQUENCE(indef) { OID 1.2.840.113549.1.7.1 (pkcs7-data), [0](indef) {
#: OCTET STRING(indef) { OCTET STRING 40 bytes } } } }.
BER_PFX = _h("3080 020103 3080 06092a864886f70d010701 a080 2480 0428" + "ab" * 40
             + "0000 0000 0000 0000")


@pytest.mark.parametrize("form, encode", [
    ("der", lambda b: LEAD + b + TAIL),
    ("base64", lambda b: LEAD + base64.b64encode(b) + TAIL),
    ("base64", lambda b: LEAD + base64.encodebytes(b) + TAIL),  # with line breaks
    ("hex", lambda b: LEAD + b.hex().encode() + TAIL),
])
def test_a_pkcs12_with_indefinite_lengths_is_a_private_key(form, encode):
    assert private_key_form(encode(BER_PFX)) == form


def test_an_indefinite_length_is_allowed_only_where_ber_allows_it():
    """Only a constructed value (a SEQUENCE) may have an indefinite length: an INTEGER
    version or a key algorithm's OID of length 0x80 opens nothing."""
    version = _h("3080 0280 03 3080 06092a864886f70d010701") + b"\xab" * 48
    oid = _h("3080 3080 0680 2a864886f70d0105") + b"\xab" * 48
    assert private_key_form(LEAD + version + TAIL) is None
    assert private_key_form(LEAD + oid + TAIL) is None
    # a PFX whose content type OID claims an indefinite length: not BER, not a key
    pfx_oid = _h("3080 020103 3080 0680 2a864886f70d010701 a080") + b"\xab" * 48
    assert private_key_form(LEAD + pfx_oid + TAIL) is None
    # and an indefinite SEQUENCE opening a public key's shape (SEQUENCE { SEQUENCE { OID
    # rsaEncryption }, BIT STRING }) is still not a private key
    public = _h("3080 3080 06092a864886f70d010101 0500 0000 0382") + b"\xab" * 48
    assert private_key_form(LEAD + public + TAIL) is None
