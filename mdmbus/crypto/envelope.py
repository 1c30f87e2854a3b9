"""Sealing and opening one stored body (envelope encryption).

A body is encrypted with AES-256-GCM under a fresh random 256-bit data key of its own; the
stored body is ``nonce (12 bytes) || ciphertext || tag``. The data key is stored only wrapped
by the region's current KEK (:mod:`mdmbus.crypto.keyring`), with that KEK's id. Both carry the
row's identity as associated data (:func:`record_aad`, :func:`letter_aad`): a body or a wrapped
key copied into another row does not open there. Deleting the row deletes the only wrapped copy
of its data key; once the KEKs that wrapped it have been destroyed, no copy of the row anywhere
(WAL, heap pages, backups) can be read.

A row without a KEK id (``kek_id IS NULL``) was stored before bodies were sealed and holds its
body in clear until `mdmbus crypto upgrade` seals it; :func:`open_body` returns it as it is.
"""

from __future__ import annotations

import os
import uuid
from typing import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mdmbus.crypto.keyring import NONCE_BYTES, Kek, WrapError

__all__ = ["seal", "seal_batch", "seal_letters", "open_body", "rewrap", "record_aad",
           "letter_aad", "SealError", "DEK_BYTES", "ERROR_AAD", "SEAL_RANDOM"]

DEK_BYTES = 32
#: Random bytes a seal takes, in this order: data key, body nonce, wrap nonce.
SEAL_RANDOM = DEK_BYTES + 2 * NONCE_BYTES
#: Where the wrap nonce starts in a seal's random bytes.
_WRAP_NONCE_AT = DEK_BYTES + NONCE_BYTES


class SealError(WrapError):
    """A sealed body does not open (altered, truncated, or moved from another row)."""


def _text(value: uuid.UUID | str | None) -> bytes:
    return b"" if value is None else str(value).encode("ascii")


def record_aad(tenant_id: uuid.UUID | str, record_id: uuid.UUID | str) -> bytes:
    """The associated data of a row of ``records``: its tenant and record id (canonical text)."""
    return b"mdmbus.records\x00" + _text(tenant_id) + b"\x00" + _text(record_id)


def letter_aad(topic: str, partition: int, offset: int, tenant_id: uuid.UUID | str | None,
               record_id: uuid.UUID | str | None) -> bytes:
    """The associated data of a dead letter: its source message and its tenant and record."""
    return (b"mdmbus.dead_letters\x00" + topic.encode() + b"\x00%d\x00%d\x00" % (partition, offset)
            + _text(tenant_id) + b"\x00" + _text(record_id))


def seal(kek: Kek, aad: bytes, body: bytes) -> tuple[bytes, bytes]:
    """(sealed body, wrapped data key) of one body."""
    return seal_batch(kek, [(aad, body)])[0]


def seal_batch(kek: Kek, items: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Seals each (associated data, body): one call for the randomness of a whole batch. The
    loop runs once a stored record on the pipeline's hot path: names it calls are bound
    locally."""
    rnd = os.urandom(SEAL_RANDOM * len(items))
    wrap, aead = kek.wrap, AESGCM
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    at = 0
    for aad, body in items:
        dek = rnd[at:at + DEK_BYTES]
        nonce = rnd[at + DEK_BYTES:at + _WRAP_NONCE_AT]
        wrap_nonce = rnd[at + _WRAP_NONCE_AT:at + SEAL_RANDOM]
        at += SEAL_RANDOM
        append((nonce + aead(dek).encrypt(nonce, body, aad), wrap(dek, aad, wrap_nonce)))
    return out


#: Appended to a dead letter's associated data for its error text, sealed under the same data
#: key as its body: neither can stand in for the other.
ERROR_AAD = b"\x00error"


def seal_letters(kek: Kek, items: Sequence[tuple[bytes, bytes | None, bytes]]
                 ) -> list[tuple[bytes | None, bytes, bytes]]:
    """Seals each dead letter's (associated data, body or None, error text) under one data key
    of its own: (sealed body or None, sealed error, wrapped data key)."""
    rnd = os.urandom((SEAL_RANDOM + NONCE_BYTES) * len(items))
    out = []
    at = 0
    for aad, body, error in items:
        dek, n_body = rnd[at:at + DEK_BYTES], rnd[at + DEK_BYTES:at + DEK_BYTES + NONCE_BYTES]
        n_wrap = rnd[at + DEK_BYTES + NONCE_BYTES:at + SEAL_RANDOM]
        n_error = rnd[at + SEAL_RANDOM:at + SEAL_RANDOM + NONCE_BYTES]
        at += SEAL_RANDOM + NONCE_BYTES
        aead = AESGCM(dek)
        out.append((None if body is None else n_body + aead.encrypt(n_body, body, aad),
                    n_error + aead.encrypt(n_error, error, aad + ERROR_AAD),
                    kek.wrap(dek, aad, n_wrap)))
    return out


def open_body(kek_of: Callable[[str], Kek], aad: bytes, body: bytes | None,
              wrapped_key: bytes | None, kek_id: str | None,
              data_aad: bytes | None = None) -> bytes | None:
    """The body in clear: unwraps the data key under the KEK ``kek_id`` names (``kek_of``
    resolves it; :class:`~mdmbus.crypto.keyring.KeyUnavailable` when it was destroyed), then
    decrypts (``data_aad``: the ciphertext's associated data where it is not ``aad``, the
    wrapped key's). A row deleted after download (body NULL) opens to None; a row stored
    before sealing (no KEK id) to its body as stored."""
    if body is None:
        return None
    if kek_id is None:
        return body
    if wrapped_key is None:
        raise SealError("a sealed body has no wrapped data key")
    dek = kek_of(kek_id).unwrap(wrapped_key, aad)
    try:
        return AESGCM(dek).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:],
                                   aad if data_aad is None else data_aad)
    except (InvalidTag, ValueError):
        raise SealError("a sealed body does not open with its data key and its row's associated "
                        "data (moved, altered or truncated)") from None


def rewrap(old: Kek, new: Kek, aad: bytes, wrapped_key: bytes) -> bytes:
    """The data key wrapped under ``old``, wrapped under ``new`` instead; the body is never
    read."""
    return new.wrap(old.unwrap(wrapped_key, aad), aad, os.urandom(NONCE_BYTES))
