"""Erasure receipts: what a tenant's deletion request is answered with. A receipt is opened
when the request is accepted and completed from the deletion audit (rule 6) once the directory
says the tenant is purged, so its counts and ids are the ones the purge itself recorded.

Every query names its tenant and runs on a connection held to that tenant by row-level
security (the gateway's ``as_tenant``)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from mdmbus.services.stores.pools import Connection

__all__ = ["open_receipt", "receipt_row", "complete_receipt", "receipt_json"]


async def open_receipt(conn: Connection, receipt_id: uuid.UUID, tenant: uuid.UUID,
                       requested_at: dt.datetime) -> None:
    await conn.execute("INSERT INTO erasure_receipts (receipt_id, tenant_id, requested_at)"
                       " VALUES ($1, $2, $3)", receipt_id, tenant, requested_at)


async def receipt_row(conn: Connection, tenant: uuid.UUID,
                      receipt_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM erasure_receipts WHERE receipt_id = $1"
                               " AND tenant_id = $2", receipt_id, tenant)


async def complete_receipt(conn: Connection, tenant: uuid.UUID, receipt_id: uuid.UUID,
                           completed_at: dt.datetime) -> asyncpg.Record | None:
    """Fills the receipt from the tenant's deletion-request audit rows: rows deleted and the
    record ids, by category (None: the receipt is gone since it was read)."""
    counts: dict[str, int] = {}
    ids: dict[str, list[str]] = {}
    for audit in await conn.fetch(
            "SELECT category, row_count, record_ids FROM deletion_audit"
            " WHERE tenant_id = $1 AND rule = 'deletion_request' ORDER BY id", tenant):
        counts[audit["category"]] = counts.get(audit["category"], 0) + audit["row_count"]
        ids.setdefault(audit["category"], []).extend(str(i) for i in audit["record_ids"])
    return await conn.fetchrow(
        "UPDATE erasure_receipts SET completed_at = $2, counts = $3::jsonb,"
        " record_ids = $4::jsonb WHERE receipt_id = $1 AND tenant_id = $5 RETURNING *",
        receipt_id, completed_at, json.dumps(counts), json.dumps(ids), tenant)


def receipt_json(row: asyncpg.Record) -> dict[str, Any]:
    """The receipt as the API answers it (openapi.yaml's ErasureReceipt)."""
    counts = json.loads(row["counts"]) if isinstance(row["counts"], str) else row["counts"]
    ids = json.loads(row["record_ids"]) if isinstance(row["record_ids"], str) else row["record_ids"]
    return {"receipt_id": str(row["receipt_id"]), "tenant_id": str(row["tenant_id"]),
            "requested_at": _iso(row["requested_at"]), "completed_at": _iso(row["completed_at"]),
            "status": "completed" if row["completed_at"] else "in_progress",
            "deleted": counts, "record_ids": ids}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()
