"""Refused records in a region store (docs/design.md section 5): one row per source message,
the body redacted of private key material and kept until its deadline, or not kept at all
(a deleted tenant's record, a record in the wrong region). Written in the batch's transaction,
so a replayed batch writes nothing twice; the notice on the dead-letter topic is sent after,
and marked sent."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Sequence

import asyncpg

from mdmbus.crypto.envelope import letter_aad, seal_letters
from mdmbus.crypto.keyring import Kek
from mdmbus.services.stores.sealing import open_letter, open_letter_error
from mdmbus.services.stores.pools import Connection

__all__ = ["DeadLetter", "Source", "insert", "unnotified", "mark_notified", "listing", "fetch"]

#: Where a refused message came from: (topic, partition, offset), its identity here.
Source = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    reason: str
    path: str
    error: str
    tenant_id: uuid.UUID | None
    record_id: uuid.UUID | None
    kind: str | None
    #: None: no body is kept (rule 7, the wrong region, or key material that could not be cut
    #: out: mdmbus.contract.retention).
    body: bytes | None
    redacted: bool
    #: Why the body is kept or not (mdmbus.contract.retention.BASES).
    basis: str = "not_kept"
    #: Length and hex SHA-256 of the message as it arrived.
    message_bytes: int = 0
    message_sha256: str | None = None

    @property
    def source(self) -> Source:
        return (self.topic, self.partition, self.offset)


def _sealed(letters: Sequence[DeadLetter], kek: Kek) -> list[tuple[bytes | None, bytes, bytes]]:
    """(sealed body or None, sealed error text, wrapped data key) of each letter."""
    return seal_letters(kek, [(letter_aad(d.topic, d.partition, d.offset, d.tenant_id,
                                          d.record_id), d.body, d.error.encode("utf-8"))
                              for d in letters])


async def insert(conn: Connection, letters: Sequence[DeadLetter], now: dt.datetime,
                 deadline: dt.datetime, *, kek: Kek) -> list[Source]:
    """Stores the letters not stored yet, each body sealed under a data key of its own wrapped
    by ``kek``; returns the sources of those newly stored. A body whose tenant was purged in
    this store is dropped here, in the writing transaction."""
    if not letters:
        return []
    # The error text is kept sealed only (error_sealed); the clear column holds ''.
    cols = list(zip(*((d.topic, d.partition, d.offset, d.reason, d.path, "", d.tenant_id,
                       d.record_id, d.kind, body, d.redacted, d.basis, d.message_bytes,
                       d.message_sha256, wrapped, error)
                      for d, (body, error, wrapped) in zip(letters, _sealed(letters, kek)))))
    *cols, wrapped_keys, errors = cols
    rows = await conn.fetch(
        "INSERT INTO dead_letters (source_topic, source_partition, source_offset, reason, path,"
        " error, tenant_id, record_id, kind, body, redacted, body_basis, message_bytes,"
        " message_sha256, stored_at, deadline, wrapped_key, kek_id, error_sealed)"
        " SELECT l.t, l.p, l.o, l.reason, l.path, l.error, l.tenant, l.rid, l.kind,"
        "   CASE WHEN g.tenant_id IS NULL THEN l.body END, l.redacted,"
        "   CASE WHEN g.tenant_id IS NULL OR l.body IS NULL THEN l.basis ELSE 'not_kept' END,"
        "   l.len, l.sha, $15, $16, l.wrapped, $18, l.error_sealed"
        " FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],"
        "   $7::uuid[], $8::uuid[], $9::text[], $10::bytea[], $11::bool[], $12::text[],"
        "   $13::int[], $14::text[], $17::bytea[], $19::bytea[])"
        "   AS l(t, p, o, reason, path, error, tenant, rid, kind, body, redacted, basis, len, sha,"
        "        wrapped, error_sealed)"
        " LEFT JOIN purged_tenants g ON g.tenant_id = l.tenant"
        " ORDER BY l.t, l.p, l.o"
        " ON CONFLICT DO NOTHING"
        " RETURNING source_topic, source_partition, source_offset", *cols, now, deadline,
        wrapped_keys, kek.id, errors)
    return [(r["source_topic"], r["source_partition"], r["source_offset"]) for r in rows]


async def unnotified(conn: Connection | asyncpg.Pool,
                     sources: Sequence[Source]) -> list[asyncpg.Record]:
    """The letters among ``sources`` whose notice was not sent yet (a replay finds those a
    crash left unsent)."""
    if not sources:
        return []
    t, p, o = zip(*sources)
    return await conn.fetch(
        "SELECT d.source_topic, d.source_partition, d.source_offset, d.reason, d.path,"
        " d.tenant_id, d.record_id, d.kind, d.body_kept, d.deadline"
        " FROM dead_letters d JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS s(t, p, o)"
        "   ON (d.source_topic, d.source_partition, d.source_offset) = (s.t, s.p, s.o)"
        " WHERE NOT d.notified ORDER BY 1, 2, 3", list(t), list(p), list(o))


async def mark_notified(conn: Connection | asyncpg.Pool, sources: Sequence[Source]) -> None:
    if not sources:
        return
    t, p, o = zip(*sources)
    await conn.execute(
        "UPDATE dead_letters d SET notified = true FROM unnest($1::text[], $2::int[],"
        " $3::bigint[]) AS s(t, p, o)"
        " WHERE (d.source_topic, d.source_partition, d.source_offset) = (s.t, s.p, s.o)",
        list(t), list(p), list(o))


async def listing(conn: Connection | asyncpg.Pool, *, tenant: uuid.UUID | None = None,
                  reason: str | None = None, limit: int = 50) -> list[asyncpg.Record]:
    """The newest letters (without bodies), optionally of one tenant or reason."""
    return await conn.fetch(
        "SELECT source_topic, source_partition, source_offset, reason, path, tenant_id,"
        " record_id, kind, body_kept, length(body) AS body_bytes, redacted, body_basis,"
        " stored_at_real, deadline FROM dead_letters"
        " WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR reason = $2)"
        " ORDER BY stored_at_real DESC, source_topic, source_partition, source_offset LIMIT $3",
        tenant, reason, limit)


async def fetch(conn: Connection | asyncpg.Pool, source: Source) -> dict | None:
    """One letter with its body (opened) and full error; never its wrapped data key."""
    row = await conn.fetchrow(
        "SELECT * FROM dead_letters WHERE source_topic = $1 AND source_partition = $2"
        " AND source_offset = $3", *source)
    if row is None:
        return None
    out = {k: v for k, v in row.items() if k not in ("wrapped_key", "kek_id", "error_sealed")}
    out["body"] = open_letter(row)
    out["error"] = open_letter_error(row)
    return out
