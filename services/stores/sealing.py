"""Where the stores seal and open bodies (mdmbus.crypto.envelope): just before a row is
written and just after it is read, so the SQL of each store stays what it was, plus the
wrapped data key and the KEK's id beside the body."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence, TypeAlias

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mdmbus.crypto.envelope import (DEK_BYTES, ERROR_AAD, SEAL_RANDOM, WRAP_NONCE_AT, letter_aad,
                                    open_body, record_aad)
from mdmbus.crypto.keyring import Kek, keyrings

__all__ = ["sealed_record_tuples", "open_record", "open_letter", "open_letter_error", "KekOf"]

#: Resolves a KEK id to the KEK (default: this process's keyrings).
KekOf = Callable[[str], Kek]
#: A row as read: asyncpg's Record, or a mapping of the same columns.
Row: TypeAlias = Mapping[str, Any] | asyncpg.Record


def sealed_record_tuples(rows: Sequence[Any], kek: Kek) -> list[tuple]:
    """Each StoreRow's tuple (as_tuple's columns) with its body sealed, then its wrapped data
    key and KEK id: envelope.seal_batch's seal, byte for byte (tests/unit/test_store_sealing.py
    holds the two to the same randomness), with record_aad's associated data.

    It runs once a stored record on the pipeline's hot path, where sealing's share of the
    worker's CPU is a target (docs/design.md): so it is seal_batch's loop with the row's AAD
    and tuple made in the same pass, the tenant's part of the AAD made once a tenant (a batch
    holds few), and the names it calls bound locally."""
    rnd = os.urandom(SEAL_RANDOM * len(rows))
    aead, wrap, kek_id = AESGCM, kek.wrap, kek.id
    prefixes: dict[Any, bytes] = {}
    out: list[tuple] = []
    append = out.append
    at = 0
    for r in rows:
        tenant, rid = r.tenant_id, r.record_id
        prefix = prefixes.get(tenant)
        if prefix is None:
            prefix = prefixes[tenant] = record_aad(tenant, "")
        aad = prefix + (rid if type(rid) is str else str(rid)).encode("ascii")
        dek = rnd[at:at + DEK_BYTES]
        nonce = rnd[at + DEK_BYTES:at + WRAP_NONCE_AT]
        wrap_nonce = rnd[at + WRAP_NONCE_AT:at + SEAL_RANDOM]
        at += SEAL_RANDOM
        append((rid, tenant, r.kind, r.category, r.device_id, r.session_id, r.event_time,
                r.deadline, r.deadline_rule, nonce + aead(dek).encrypt(nonce, r.body, aad),
                wrap(dek, aad, wrap_nonce), kek_id))
    return out


def open_record(row: Row, kek_of: KekOf | None = None) -> bytes | None:
    """The body of a ``records`` row read with its tenant_id, record_id, body, wrapped_key and
    kek_id."""
    return open_body(kek_of or keyrings.kek, record_aad(row["tenant_id"], row["record_id"]),
                     row["body"], row["wrapped_key"], row["kek_id"])


def open_letter(row: Row, kek_of: KekOf | None = None) -> bytes | None:
    """The body of a ``dead_letters`` row read with its source, tenant and record ids, body,
    wrapped_key and kek_id."""
    return open_body(kek_of or keyrings.kek, _letter_aad(row), row["body"], row["wrapped_key"],
                     row["kek_id"])


def open_letter_error(row: Row, kek_of: KekOf | None = None) -> str:
    """The error text of a ``dead_letters`` row (read with error and error_sealed too)."""
    if row["kek_id"] is None:
        return row["error"]
    aad = _letter_aad(row)
    error = open_body(kek_of or keyrings.kek, aad, row["error_sealed"], row["wrapped_key"],
                      row["kek_id"], aad + ERROR_AAD)
    if error is None:  # sealing writes error_sealed with the KEK id: never one without the other
        raise ValueError(f"dead letter {row['source_topic']}/{row['source_partition']}/"
                         f"{row['source_offset']} has a KEK id but no sealed error")
    return error.decode("utf-8")


def _letter_aad(row: Row) -> bytes:
    return letter_aad(row["source_topic"], row["source_partition"], row["source_offset"],
                      row["tenant_id"], row["record_id"])
