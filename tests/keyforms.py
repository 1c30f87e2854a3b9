"""Every form of private key material the contract refuses, made with ``cryptography`` (fresh
keys per test run, not files a detector could have been tuned to), and public keys and
certificates it must keep accepting.

A *container* is the DER of a key in one structure (PKCS#1, PKCS#8 plain and encrypted, SEC 1,
PKCS#12 plain and encrypted, and one PKCS#12 in BER with an indefinite length); an *encoding* writes it as bytes or text (raw DER, PEM armour,
base64 or hex, with or without line breaks). Every container x encoding pair is a form; the tests
enumerate them all, none is sampled.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

__all__ = ["KeyForm", "key_forms", "text_key_forms", "public_forms", "secret_fragments",
           "normalised", "leaked"]

_PASSWORD = b"correct horse battery staple"


@dataclass(frozen=True)
class KeyForm:
    #: "rsa-pkcs8/base64-lines" and the like: a test id.
    name: str
    #: The key as bytes (what a bytes field, a file or a message carries).
    data: bytes
    #: True when ``data`` is text (ASCII): it fits a string field too.
    text: bool


@functools.lru_cache(maxsize=1)
def _keys() -> dict[str, object]:
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate()}


@functools.lru_cache(maxsize=1)
def _certificate() -> x509.Certificate:
    key = _keys()["ec"]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mdmbus test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


def _containers() -> dict[str, bytes]:
    """Name -> DER of a private key in that structure."""
    der, p8, trad = ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.PrivateFormat.TraditionalOpenSSL
    plain, locked = ser.NoEncryption(), ser.BestAvailableEncryption(_PASSWORD)
    out: dict[str, bytes] = {}
    for algo, key in _keys().items():
        out[f"{algo}-pkcs8"] = key.private_bytes(der, p8, plain)
        out[f"{algo}-pkcs8-encrypted"] = key.private_bytes(der, p8, locked)
        if algo != "ed25519":  # PKCS#1 for RSA, SEC 1 for EC; Ed25519 has only PKCS#8
            out[f"{algo}-{'pkcs1' if algo == 'rsa' else 'sec1'}"] = key.private_bytes(
                der, trad, plain)
        cert = _certificate() if algo == "ec" else None
        out[f"{algo}-pkcs12"] = pkcs12.serialize_key_and_certificates(
            b"device", key, cert, None, plain)
        out[f"{algo}-pkcs12-encrypted"] = pkcs12.serialize_key_and_certificates(
            b"device", key, cert, None, locked)
    out["rsa-pkcs12-ber"] = _indefinite(out["rsa-pkcs12"])
    return out


def _indefinite(der: bytes) -> bytes:
    """The same PFX in BER as Java keystores write it: the outer SEQUENCE of indefinite length
    (0x80), closed by two end-of-contents octets; what it holds stays as it was."""
    assert der[0] == 0x30 and der[1] & 0x80, "a PFX: a SEQUENCE with a long-form length"
    content = der[2 + (der[1] & 0x7F):]
    return b"\x30\x80" + content + b"\x00\x00"


def _lines(text: bytes, width: int, sep: bytes = b"\n") -> bytes:
    return sep.join(text[i:i + width] for i in range(0, len(text), width))


def _pem(label: str, der: bytes) -> bytes:
    return (f"-----BEGIN {label}-----\n".encode() + _lines(base64.b64encode(der), 64)
            + f"\n-----END {label}-----\n".encode())


#: encoding name -> (writes DER as, is text)
_ENCODINGS: dict[str, tuple[Callable[[bytes], bytes], bool]] = {
    "der": (lambda d: d, False),
    "base64": (base64.b64encode, True),
    "base64-lines": (lambda d: _lines(base64.b64encode(d), 64), True),
    "base64-mime": (base64.encodebytes, True),  # 76 columns, trailing newline
    "base64-crlf": (lambda d: _lines(base64.b64encode(d), 64, b"\r\n"), True),
    "base64-urlsafe": (base64.urlsafe_b64encode, True),
    "hex": (lambda d: d.hex().encode(), True),
    "hex-upper": (lambda d: d.hex().upper().encode(), True),
    "hex-lines": (lambda d: _lines(d.hex().encode(), 64), True),
    "hex-colons": (lambda d: d.hex(":").encode(), True),
    "pem": (lambda d: _pem("PRIVATE KEY", d), True),
    "pem-base64": (lambda d: base64.b64encode(_pem("PRIVATE KEY", d)), True),
    "in-text": (lambda d: b"my key is " + base64.b64encode(d) + b" keep it safe", True),
}


@functools.lru_cache(maxsize=1)
def key_forms() -> tuple[KeyForm, ...]:
    """Every container in every encoding."""
    return tuple(KeyForm(f"{c}/{e}", write(der), text)
                 for c, der in sorted(_containers().items())
                 for e, (write, text) in _ENCODINGS.items())


def text_key_forms() -> tuple[KeyForm, ...]:
    return tuple(f for f in key_forms() if f.text)


@functools.lru_cache(maxsize=1)
def public_forms() -> tuple[KeyForm, ...]:
    """Public keys and a certificate, DER and encoded: not private key material."""
    der = ser.Encoding.DER
    objects = {f"{a}-spki": k.public_key().public_bytes(der, ser.PublicFormat.SubjectPublicKeyInfo)
               for a, k in _keys().items()}
    objects["rsa-pkcs1-public"] = _keys()["rsa"].public_key().public_bytes(
        der, ser.PublicFormat.PKCS1)
    objects["certificate"] = _certificate().public_bytes(der)
    return tuple(KeyForm(f"{n}/{e}", write(d), text) for n, d in sorted(objects.items())
                 for e, (write, text) in _ENCODINGS.items() if not e.startswith("pem"))


def _windows(window: bytes) -> list[bytes]:
    """``window`` raw, hex, and base64 wherever it falls in an encoded text."""
    out = [window, window.hex().encode(), window.hex().upper().encode()]
    for shift in range(3):
        text = base64.b64encode(bytes(shift) + window)
        out.append(text[-(-shift * 8 // 6) + 1:(shift + len(window)) * 8 // 6 - 1])
    return out


@functools.lru_cache(maxsize=1)
def secret_fragments() -> tuple[bytes, ...]:
    """Byte strings that must appear nowhere a key was planted: a 16-byte window of the
    secret of every key (private exponent, scalar, seed) and of the middle of every
    container's DER (the ciphertext of the encrypted ones), raw, hex and base64. Finding one
    means key material was kept; it does not rely on the detector under test."""
    out: list[bytes] = []
    for algo, key in _keys().items():
        if algo == "rsa":
            secret = key.private_numbers().d.to_bytes(256, "big")
        elif algo == "ec":
            secret = key.private_numbers().private_value.to_bytes(32, "big")
        else:
            secret = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw,
                                       ser.NoEncryption())
        out += _windows(secret[8:24])
    for der in _containers().values():
        out += _windows(der[len(der) // 2:len(der) // 2 + 16])
    return tuple(out)


def normalised(haystack: bytes) -> list[bytes]:
    """``haystack`` as found, and without line breaks, colons and JSON escapes, in the
    standard base64 alphabet: where a fragment split across lines is whole again."""
    flat = haystack.replace(b"\\n", b"").replace(b"\\r", b"")
    for ch in (b"\n", b"\r", b":", b" "):
        flat = flat.replace(ch, b"")
    return [haystack, flat, flat.translate(bytes.maketrans(b"-_", b"+/"))]


def leaked(haystack: bytes) -> list[bytes]:
    """The secret fragments found in ``haystack`` (empty: none)."""
    forms = normalised(haystack)
    return [f for f in secret_fragments() if any(f in h for h in forms)]
