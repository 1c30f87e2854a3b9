"""What a dead letter may keep of a refused message: one rule for every reason and every topic.

Minimisation (docs/design.md rule 5) stores private key material nowhere, dead letters
included. A body is kept only when it was looked at in full:

- the message decoded: every string and bytes value was scanned (:func:`~mdmbus.contract.redact`
  reads them all, whatever the refusal stopped at); values holding key material are replaced
  and the record re-encoded (``redacted``), otherwise the message is kept as it came
  (``scanned``); a redacted record that no longer encodes keeps nothing (``withheld``);
- it did not decode (empty, oversized, garbage, wrong marker, unknown fingerprint, truncated,
  body mismatch): its raw bytes are scanned whole as a fragment (PEM, DER private-key openings
  even cut short, their base64 and hex); kept only when nothing was found (``raw_scanned``; the
  first KiB of an oversized message), otherwise nothing is kept (``withheld``).

Whatever is kept, the letter records the length and SHA-256 of the message as it arrived, so
an operator can match it with the producer's copy without the body. The error text and the
field path of a refusal may quote values; they are scanned the same way and replaced when they
quote key material.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mdmbus import codec
from mdmbus.codec import Decoded
from mdmbus.contract.keys import holds_private_key
from mdmbus.contract.registry import Registry
from mdmbus.contract.rules import redact

__all__ = ["Kept", "keep", "keep_valid", "safe_text", "BASES", "SCANNED", "REDACTED_BODY",
           "RAW_SCANNED", "WITHHELD", "NOT_KEPT", "OVERSIZED_KEPT_BYTES"]

#: Decoded, every value scanned, nothing found: the message as it came.
SCANNED = "scanned"
#: Decoded; values holding key material replaced, the record re-encoded.
REDACTED_BODY = "redacted"
#: Not decodable; its raw bytes scanned whole, nothing found: kept (an oversized one's first KiB).
RAW_SCANNED = "raw_scanned"
#: Key material found where it could not be cut out: no body, only this notice.
WITHHELD = "withheld"
#: No body by rule (no value at all, a deleted tenant, a region the tenant does not live in).
NOT_KEPT = "not_kept"

#: Why a body is there or not, in words (``mdmbus deadletters show``).
BASES: dict[str, str] = {
    SCANNED: "decoded and every value scanned for key material; none found, kept as it came",
    REDACTED_BODY: "decoded and every value scanned; values holding private key material "
                   "replaced before it was stored",
    RAW_SCANNED: "could not be decoded; its raw bytes were scanned whole for key material "
                 "(PEM, DER, base64, hex); none found, kept",
    WITHHELD: "held private key material that could not be cut out; no body kept, only its "
              "length and SHA-256",
    NOT_KEPT: "no body kept by rule (no value, a deleted tenant, or a region the tenant does "
              "not live in)",
}

#: What an oversized message keeps when it is clean: its first KiB.
OVERSIZED_KEPT_BYTES = 1024

_QUOTED_KEY = "[withheld: quoted private key material]"


@dataclass(frozen=True, slots=True)
class Kept:
    #: The bytes stored, or None.
    body: bytes | None
    #: One of :data:`BASES`.
    basis: str
    #: True when values were replaced (:data:`REDACTED_BODY`).
    redacted: bool
    #: Length of the message as it arrived (0 for none).
    length: int
    #: Hex SHA-256 of the message as it arrived (None for none).
    sha256: str | None


def _digest(value: bytes | None) -> tuple[int, str | None]:
    if value is None:
        return 0, None
    return len(value), hashlib.sha256(value).hexdigest()


def keep(registry: Registry, value: bytes | None, decoded: Decoded | None,
         oversized: bool = False, key_found: bool = False) -> Kept:
    """What the dead letter of a refused message keeps. ``decoded`` is the record when the
    message decoded (whatever check refused it), None otherwise; ``oversized``: keep at most
    the first KiB; ``key_found``: the verdict found key material (if redaction finds none to
    replace, the two disagree and nothing is kept)."""
    length, sha = _digest(value)
    if value is None:
        return Kept(None, NOT_KEPT, False, length, sha)
    if decoded is not None:
        kind, record = decoded
        clean = redact(kind, record, registry)
        if clean == record:
            if key_found:
                return Kept(None, WITHHELD, False, length, sha)
            return Kept(value, SCANNED, False, length, sha)
        try:
            return Kept(registry.codec.encode(kind, clean), REDACTED_BODY, True, length, sha)
        except (codec.CodecError, ValueError, TypeError, AttributeError):
            return Kept(None, WITHHELD, False, length, sha)
    if holds_private_key(value, fragment=True):
        return Kept(None, WITHHELD, False, length, sha)
    body = value[:OVERSIZED_KEPT_BYTES] if oversized else value
    return Kept(body, RAW_SCANNED, False, length, sha)


def keep_valid(value: bytes, keeps_body: bool) -> Kept:
    """What the dead letter of a record refused by a rule keeps: the record passed every
    content check, every value scanned, so it is kept as it came where the rule keeps bodies."""
    length, sha = _digest(value)
    if not keeps_body:
        return Kept(None, NOT_KEPT, False, length, sha)
    return Kept(value, SCANNED, False, length, sha)


def safe_text(text: str) -> str:
    """``text`` (an error message, a field path) unless it quotes private key material."""
    return _QUOTED_KEY if text and holds_private_key(text, fragment=True) else text
