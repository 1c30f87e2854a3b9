"""The read routes of the privacy center: ``GET /v1/holdings`` (what is held of the caller's
tenant and until when) and ``GET /v1/erasure-receipts`` (its past deletion receipts).

They are API routes like any other (ROUTES in app.py, access.py, openapi.yaml): the page shows
their answers and nothing else, so what the page shows and what the API answers cannot
differ. Both answer for a purged tenant too: the receipts are the proof of its deletion."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mdmbus.services.gateway.access import ALLOWED
from mdmbus.services.gateway.tokens import Caller
from mdmbus.services.stores import holdings as store
from mdmbus.services.stores.directory import Entry

if TYPE_CHECKING:
    from mdmbus.services.gateway.app import Gateway

__all__ = ["holdings", "erasure_receipts"]

NO_STORE = {"Cache-Control": "no-store"}


def _parse(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


async def holdings(gateway: "Gateway", caller: Caller, entry: Entry) -> web.Response:
    """The answer of GET /v1/holdings for an authorized caller of this region."""
    async with gateway.as_tenant(gateway.directory_pool, caller.tenant) as conn:
        life = await store.lifecycle(conn, caller.tenant)
    async with gateway.as_tenant(gateway.pool, caller.tenant) as conn, \
            conn.transaction(readonly=True, isolation="repeatable_read"):
        records = await store.records_held(
            conn, caller.tenant, None if life is None else _parse(life["purge_at"]))
        letters = await store.dead_letters_held(conn, caller.tenant)
        downloads = await store.cm_downloads(conn, caller.tenant,
                                             dt.datetime.now(dt.timezone.utc))
    body: dict[str, Any] = {
        "tenant_id": str(caller.tenant), "region": entry.region,
        "gateway": gateway.settings.gateway_url(entry.region),
        "lifecycle": life,
        "caller": {"role": caller.role,
                   "routes": sorted(r for r, roles in ALLOWED.items() if caller.role in roles)},
        "held": {"uploads": records.get("upload", []),
                 "relay_pending": records.get("relay", []),
                 "inventory_cache": records.get("inventory_cache", []),
                 "device_commands": records.get("command", []),
                 "dead_letters": letters},
        "cm_downloads": downloads,
        "as_of": dt.datetime.now(dt.timezone.utc).isoformat(),
        "clock": gateway.clock.now_dt().astimezone(dt.timezone.utc).isoformat()}
    return web.json_response(body, headers=NO_STORE)


async def erasure_receipts(gateway: "Gateway", caller: Caller) -> web.Response:
    """The answer of GET /v1/erasure-receipts for an authorized caller of this region."""
    async with gateway.as_tenant(gateway.pool, caller.tenant) as conn:
        ids = await store.receipt_ids(conn, caller.tenant)
    # Each as GET /v1/erasure-receipts/{id} answers it (one still in progress is completed
    # there once the purge is done): one format, and a tenant has a receipt or two.
    out = [receipt for i in ids if (receipt := await gateway._receipt(caller.tenant, i))]
    return web.json_response({"receipts": out}, headers=NO_STORE)
