"""Read and export of a tenant's data (rule 4): allowed while the tenant is active and through
its read-only retention period, until the purge. Records come back decoded with the contract;
opaque fields stay opaque bytes.

An export is read in pages along the records' key, (tenant, record id), each page its own short
query: the gateway holds a database connection only while a page is read, never while it
writes to a client that may read slowly or not at all (docs/design.md rule 8, isolation). A
record stored or deleted while an export runs is in it or not depending on where the export
had got to; every record held for the whole export is in it exactly once."""

from __future__ import annotations

import uuid
from typing import Any

from mdmbus.codec import Decoded


from mdmbus.contract import Registry, default_registry
from mdmbus.services.stores.sealing import open_record
from mdmbus.services.stores.pools import Connection

__all__ = ["export_page", "EXPORT_PAGE"]

#: Records a page holds.
EXPORT_PAGE = 100


async def export_page(conn: Connection, tenant_id: uuid.UUID, after: uuid.UUID | None,
                      limit: int = EXPORT_PAGE, contract: Registry | None = None,
                      ) -> tuple[list[Decoded], uuid.UUID | None]:
    """(kind, record) of up to ``limit`` held records of the tenant whose ids follow ``after``
    (None: from the first), in id order, and the id to continue after (None: that was all)."""
    contract = contract or default_registry()
    rows = await conn.fetch(
        "SELECT tenant_id, record_id, body, wrapped_key, kek_id FROM records"
        " WHERE tenant_id = $1 AND has_body"
        " AND ($2::uuid IS NULL OR record_id > $2) ORDER BY record_id LIMIT $3",
        tenant_id, after, limit)
    page = [contract.codec.decode(_body(row)) for row in rows]
    return page, (rows[-1]["record_id"] if len(rows) == limit else None)


def _body(row: Any) -> bytes:
    body = open_record(row)
    if body is None:  # export_page reads held rows, whose body is there by definition
        raise ValueError(f"record {row['record_id']} is held but has no body")
    return body
