"""`mdmbus deadletters list|show`: the refused records of a region, for operators. Listing
shows ids, reasons, fields and what was kept, never bodies; `show` prints one letter: its body
decoded where one was kept, and why it was kept or not (a body is stored only once scanned
whole for private key material: mdmbus.contract.retention)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from mdmbus.errors import UsageError
from mdmbus.settings import Settings

__all__ = ["list_dead_letters", "show_dead_letter"]


def _pool(settings: Settings, region: str):
    """The region's store as its read-only role (mdmbus/identities.py)."""
    from mdmbus.connections import pg_connect
    from mdmbus.identities import role_of
    from mdmbus.regions import region_database
    return pg_connect(settings, region_database(region), role_of("reader", region))


def list_dead_letters(settings: Settings, region: str, tenant: str | None, reason: str | None,
                      limit: int) -> int:
    from mdmbus.services.stores.dead_letters import listing
    try:
        tenant_id = uuid.UUID(tenant) if tenant else None
    except ValueError:
        raise UsageError(f"--tenant {tenant!r} is not a uuid") from None

    async def run() -> int:
        conn = await _pool(settings, region)
        try:
            rows = await listing(conn, tenant=tenant_id, reason=reason, limit=limit)
        finally:
            await conn.close()
        print(f"{'source':<34} {'reason':<22} {'field':<24} {'tenant':<36} body   "
              f"{'kept as':<11} deadline")
        for r in rows:
            source = f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}"
            body = f"{r['body_bytes']}B" if r["body_kept"] else "none"
            print(f"{source:<34} {r['reason']:<22} {r['path'][:24]:<24} "
                  f"{str(r['tenant_id'] or '-'):<36} {body:<6} {r['body_basis']:<11} "
                  f"{r['deadline']:%Y-%m-%d %H:%M}")
        print(f"{len(rows)} dead letters (newest first; `mdmbus deadletters show SOURCE "
              f"--region {region}` shows one)")
        return 0
    return asyncio.run(run())


def show_dead_letter(settings: Settings, region: str, source: str) -> int:
    from mdmbus.codec import CodecError
    from mdmbus.contract import default_registry, to_json
    from mdmbus.contract.retention import BASES
    from mdmbus.services.stores.dead_letters import fetch
    topic, _, rest = source.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    try:
        key = (topic, int(partition), int(rest))
    except ValueError:
        raise UsageError(f"{source!r} is not TOPIC:PARTITION:OFFSET") from None

    async def run() -> int:
        conn = await _pool(settings, region)
        try:
            row = await fetch(conn, key)
        finally:
            await conn.close()
        if row is None:
            raise UsageError(f"no dead letter {source} in region {region}")
        out: dict[str, Any] = {k: (str(v) if v is not None and not isinstance(v, (int, bool, str)) else v)
               for k, v in dict(row).items() if k not in ("body",)}
        out["body_basis_means"] = BASES.get(row["body_basis"], row["body_basis"])
        body = row["body"]
        if body is not None:
            registry = default_registry()
            try:
                kind, record = registry.codec.decode(body)
                out["record"] = {"kind": kind,
                                 "record": to_json(registry.spec(kind).expanded, record)}
            except CodecError:
                out["body_hex"] = body[:256].hex()
        print(json.dumps(out, indent=2))
        return 0
    return asyncio.run(run())
