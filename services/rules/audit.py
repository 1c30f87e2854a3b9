"""Deletion is a feature with proof: every delete is written to the audit table and returned
to the caller, which counts it in its metrics. The audit holds ids and counts, never data."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from mdmbus.services.stores.pools import Connection

__all__ = ["Deletion", "audit"]

# Rule names, the bounded label values of mdmbus_deletions_total{rule=...}.
SESSION_EXPIRY = "session_expiry"
DELETE_AFTER_DOWNLOAD = "delete_after_download"
RETENTION_PURGE = "retention_purge"
DELETION_REQUEST = "deletion_request"
INVENTORY_CACHE = "inventory_cache_removal"
DEAD_LETTER_EXPIRY = "dead_letter_expiry"
RULES = (SESSION_EXPIRY, DELETE_AFTER_DOWNLOAD, RETENTION_PURGE, DELETION_REQUEST, INVENTORY_CACHE,
         DEAD_LETTER_EXPIRY)


@dataclass(frozen=True)
class Deletion:
    """One batch of rows deleted under one rule, in one region and category."""

    rule: str
    region: str
    category: str
    record_ids: Sequence[uuid.UUID]
    #: Real seconds from each row's deadline to its deletion (empty where there is no deadline).
    lags_s: Sequence[float] = field(default_factory=tuple)
    tenant_id: uuid.UUID | None = None
    #: Rows deleted that had no record id (a dead letter of bytes that never decoded).
    unidentified: int = 0

    @property
    def count(self) -> int:
        return len(self.record_ids) + self.unidentified


async def audit(conn: Connection, now: dt.datetime, deletions: Iterable[Deletion]) -> None:
    """Writes the audit rows in the caller's transaction, so a delete and its proof commit together."""
    rows = [(now, d.rule, d.region, d.category, d.tenant_id, d.count, list(d.record_ids),
             max(d.lags_s) if d.lags_s else None) for d in deletions if d.count]
    if rows:
        await conn.executemany(
            "INSERT INTO deletion_audit (deleted_at, rule, region, category, tenant_id, row_count,"
            " record_ids, max_lag_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)
