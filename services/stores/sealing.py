"""Where the stores seal and open bodies (mdmbus.crypto.envelope): just before a row is
written and just after it is read, so the SQL of each store stays what it was, plus the
wrapped data key and the KEK's id beside the body."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeAlias

import asyncpg

from mdmbus.crypto.envelope import ERROR_AAD, letter_aad, open_body, record_aad, seal_batch
from mdmbus.crypto.keyring import Kek, keyrings

__all__ = ["sealed_record_tuples", "open_record", "open_letter", "open_letter_error", "KekOf"]

#: Resolves a KEK id to the KEK (default: this process's keyrings).
KekOf = Callable[[str], Kek]
#: A row as read: asyncpg's Record, or a mapping of the same columns.
Row: TypeAlias = Mapping[str, Any] | asyncpg.Record


def sealed_record_tuples(rows: Sequence[Any], kek: Kek) -> list[tuple]:
    """Each StoreRow's tuple with its body sealed, then its wrapped data key and KEK id. The
    associated data is record_aad's, its tenant part made once a tenant (a batch holds few)."""
    prefixes: dict[Any, bytes] = {}
    items = []
    for r in rows:
        prefix = prefixes.get(r.tenant_id)
        if prefix is None:
            prefix = prefixes[r.tenant_id] = record_aad(r.tenant_id, "")
        items.append((prefix + str(r.record_id).encode("ascii"), r.body))
    kek_id = kek.id
    return [r.sealed_tuple(body, wrapped, kek_id)
            for r, (body, wrapped) in zip(rows, seal_batch(kek, items))]


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
