"""Idempotent batch writes of records into a region store.

One batch is one transaction: COPY into a temporary table, then one INSERT ... SELECT ...
ON CONFLICT (tenant_id, record_id) DO NOTHING that keeps only rows of tenants that are onboarded and active. The
store, not a cache in the processor, decides whether a tenant may still be written (rule 4),
so a lifecycle change and a write can never disagree.

A batch without deadlines (no commands) takes the plain write: the same INSERT without the
session join, the DISTINCT and the outcome query, which run only for the rows it did not store
(COPY straight into ``records`` is not open to the pipeline: the table forces row-level
security, under which PostgreSQL refuses COPY FROM).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Sequence


from mdmbus.crypto.keyring import Kek
from mdmbus.services.rules.session_expiry import command_deadline_sql
from mdmbus.services.stores.sealing import sealed_record_tuples
from mdmbus.services.stores.pools import Connection

__all__ = ["StoreRow", "WriteOutcome", "RecordKey", "write_records", "COLUMNS"]

COLUMNS = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
           "event_time", "deadline", "deadline_rule", "body", "wrapped_key", "kek_id")


@dataclass(frozen=True, slots=True)
class StoreRow:
    """One record as the store takes it. Ids are uuid.UUID or their canonical text (the
    pipeline passes text: asyncpg encodes either; the store answers with uuid values)."""

    record_id: uuid.UUID | str
    tenant_id: uuid.UUID | str
    kind: str
    category: str
    device_id: uuid.UUID | str | None
    session_id: uuid.UUID | str | None
    event_time: dt.datetime
    #: For commands: the fallback used until the session's expiry is known.
    deadline: dt.datetime | None
    deadline_rule: str | None
    body: bytes

    def as_tuple(self) -> tuple:
        return (self.record_id, self.tenant_id, self.kind, self.category, self.device_id,
                self.session_id, self.event_time, self.deadline, self.deadline_rule, self.body)

    def sealed_tuple(self, body: bytes, wrapped_key: bytes, kek_id: str) -> tuple:
        """The row as :data:`COLUMNS` takes it: as_tuple's, the body sealed, then its wrapped
        data key and KEK id (built in one step: once a stored record)."""
        return (self.record_id, self.tenant_id, self.kind, self.category, self.device_id,
                self.session_id, self.event_time, self.deadline, self.deadline_rule, body,
                wrapped_key, kek_id)


#: A record's identity: (tenant id, record id), both as canonical text. Record ids are chosen by
#: producers; two tenants may use the same one, and each keeps its record.
RecordKey = tuple[str, str]


@dataclass(frozen=True)
class WriteOutcome:
    """What became of each row of a batch, by :data:`RecordKey`."""

    stored: list[RecordKey]
    duplicates: list[RecordKey]
    #: Rows refused because the tenant is in its read-only retention period.
    in_retention: list[RecordKey]
    #: Rows refused because the tenant is not onboarded in this region.
    not_onboarded: list[RecordKey]
    #: Rows refused because the tenant's data was purged (retention or deletion request).
    deleted: list[RecordKey]
    #: Rows not stored because they arrived past their deadline (a command of an expired
    #: session): nothing to keep, nothing to refuse.
    expired: list[RecordKey]
    #: CPU seconds the writing thread spent sealing the batch's bodies: encryption's cost,
    #: measured where it is paid (the pipeline counts it, mdmbus_seal_cpu_seconds_total).
    seal_cpu_s: float = 0.0


_CREATE_INCOMING = """
CREATE TEMP TABLE IF NOT EXISTS incoming (
    record_id uuid, tenant_id uuid, kind text, category text, device_id uuid, session_id uuid,
    event_time timestamptz, deadline timestamptz, deadline_rule text, body bytea,
    wrapped_key bytea, kek_id text
) ON COMMIT DELETE ROWS
"""

_INSERT = f"""
WITH candidates AS (
    SELECT DISTINCT ON (i.tenant_id, i.record_id)
           i.record_id, i.tenant_id, i.kind, i.category, i.device_id, i.session_id,
           i.event_time, i.deadline_rule, i.body, i.wrapped_key, i.kek_id,
           CASE WHEN i.category = 'command'
                THEN {command_deadline_sql("s.expires_at", "i.deadline", "$2")}
                ELSE i.deadline END AS deadline
    FROM incoming i
    JOIN tenants t ON t.tenant_id = i.tenant_id AND t.state = 'active'
    LEFT JOIN device_sessions s
           ON i.category = 'command' AND s.tenant_id = i.tenant_id
          AND s.device_id = i.device_id AND s.session_id = i.session_id
    ORDER BY i.tenant_id, i.record_id
), ins AS (
    INSERT INTO records (record_id, tenant_id, kind, category, device_id, session_id,
                         event_time, stored_at, deadline, deadline_rule, body, wrapped_key, kek_id)
    SELECT record_id, tenant_id, kind, category, device_id, session_id, event_time, $1,
           deadline, deadline_rule, body, wrapped_key, kek_id
    FROM candidates
    -- A record already past its deadline is not stored: a command whose session has expired
    -- (and a replayed one the sweeper has deleted since) must not come back.
    WHERE deadline IS NULL OR deadline > $1
    ORDER BY tenant_id, record_id
    ON CONFLICT (tenant_id, record_id) DO NOTHING
    RETURNING tenant_id, record_id
)
SELECT i.tenant_id::text AS tenant_id, i.record_id::text AS record_id,
       ins.record_id IS NOT NULL AS stored,
       COALESCE(c.deadline <= $1, false) AS expired,
       COALESCE(t.state, CASE WHEN p.tenant_id IS NOT NULL THEN 'purged' END) AS state
FROM incoming i
LEFT JOIN ins ON ins.tenant_id = i.tenant_id AND ins.record_id = i.record_id
LEFT JOIN candidates c ON c.tenant_id = i.tenant_id AND c.record_id = i.record_id
LEFT JOIN tenants t ON t.tenant_id = i.tenant_id
LEFT JOIN purged_tenants p ON p.tenant_id = i.tenant_id
"""


#: The plain write: rows without a deadline (no command, nothing that can arrive expired), of
#: tenants active in this store, inserted straight from ``incoming`` (in key order, as every
#: writer of several rows locks them). Whatever it does not store is classified by _WHY_NOT.
_INSERT_PLAIN = """
INSERT INTO records (record_id, tenant_id, kind, category, device_id, session_id, event_time,
                     stored_at, deadline, deadline_rule, body, wrapped_key, kek_id)
SELECT i.record_id, i.tenant_id, i.kind, i.category, i.device_id, i.session_id, i.event_time,
       $1, i.deadline, i.deadline_rule, i.body, i.wrapped_key, i.kek_id
FROM incoming i
JOIN tenants t ON t.tenant_id = i.tenant_id AND t.state = 'active'
ORDER BY i.tenant_id, i.record_id
ON CONFLICT (tenant_id, record_id) DO NOTHING
RETURNING tenant_id::text AS tenant_id, record_id::text AS record_id
"""

#: Why rows of ``incoming`` were not stored by the plain write: their tenant's state here.
_WHY_NOT = """
SELECT i.tenant_id::text AS tenant_id, i.record_id::text AS record_id,
       COALESCE(t.state, CASE WHEN p.tenant_id IS NOT NULL THEN 'purged' END) AS state
FROM incoming i
LEFT JOIN tenants t ON t.tenant_id = i.tenant_id
LEFT JOIN purged_tenants p ON p.tenant_id = i.tenant_id
"""


def plain(rows: Sequence[StoreRow]) -> bool:
    """Whether a batch can take the plain write: no row has a deadline to decide (commands
    join their session, a deadline may have passed)."""
    return all(r.deadline is None and r.category != "command" for r in rows)


async def write_records(conn: Connection, rows: Sequence[StoreRow], now: dt.datetime,
                        command_grace_s: float = 0.0, *, kek: Kek) -> WriteOutcome:
    """Stores ``rows`` in one transaction, each body sealed under a data key of its own
    wrapped by ``kek`` (the region's current KEK); durable when this returns. Whether a
    tenant may be written is decided in this transaction, by the statement that writes."""
    if not rows:
        return WriteOutcome([], [], [], [], [], [])
    async with conn.transaction():
        await conn.execute(_CREATE_INCOMING)
        started = time.thread_time()
        sealed = sealed_record_tuples(rows, kek)
        out = WriteOutcome([], [], [], [], [], [], seal_cpu_s=time.thread_time() - started)
        await conn.copy_records_to_table("incoming", records=sealed, columns=COLUMNS)
        if plain(rows):
            return await _write_plain(conn, len(rows), now, out)
        seen: set[RecordKey] = set()
        for rec in await conn.fetch(_INSERT, now, command_grace_s):
            rid = (rec["tenant_id"], rec["record_id"])
            if rid in seen:  # the same record twice in one batch: stored once
                out.duplicates.append(rid)
            elif rec["stored"]:
                out.stored.append(rid)
            else:
                _not_stored(out, rid, rec["state"], rec["expired"])
            seen.add(rid)
    return out


def _not_stored(out: WriteOutcome, rid: RecordKey, state: str | None, expired: bool) -> None:
    """Files a row the write did not store under why: its tenant's state here (not onboarded,
    in retention, purged), else past its deadline, else a duplicate of a stored row."""
    refused = {None: out.not_onboarded, "retention": out.in_retention, "purged": out.deleted}
    if state in refused:
        refused[state].append(rid)
    else:
        (out.expired if expired else out.duplicates).append(rid)


async def _write_plain(conn: Connection, count: int, now: dt.datetime,
                       out: WriteOutcome) -> WriteOutcome:
    """The plain write (_INSERT_PLAIN), in the caller's transaction: every row stored in the
    common case (fresh ids of active tenants) costs one statement; otherwise each row not
    stored is told apart by its tenant's state (not onboarded, in retention, purged) or is a
    duplicate (stored before, or twice in the batch: stored once)."""
    inserted = {(r["tenant_id"], r["record_id"]) for r in await conn.fetch(_INSERT_PLAIN, now)}
    if len(inserted) == count:
        out.stored.extend(inserted)
        return out
    for rec in await conn.fetch(_WHY_NOT):
        rid = (rec["tenant_id"], rec["record_id"])
        if rid in inserted:
            inserted.discard(rid)  # its first copy in the batch; a second is a duplicate
            out.stored.append(rid)
        else:
            _not_stored(out, rid, rec["state"], False)
    return out
