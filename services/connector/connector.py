"""The CM-side connector (``mdmbus process cm-connector``): for each tenant it holds a token
for, it downloads the tenant's pending relay records from the gateway, commits them to the CM
database, and only then acknowledges them, so the cloud deletes its copy (rule 2).

Order per batch: download -> write to CM in one transaction (durable, idempotent) ->
acknowledge. A crash anywhere repeats the batch: the CM write stores nothing twice, and the
gateway serves the records again until they are acknowledged, so a CM offline for any length
of time loses nothing.

A record is (tenant, record id): ids are the producers' choice. Only ids whose row for this
tenant CM holds with the very bytes downloaded are acknowledged; an id CM holds with other
bytes is a conflict (counted, kept in ``relay_conflicts``, logged without values), and a record
naming another tenant is neither stored nor acknowledged: in both cases the cloud keeps its copy.

The tenants are the token files in MDMBUS_CM_TOKENS (one JSON file a tenant, see
client.TokenFile), looked at every few seconds: a new file starts a tenant's loop, a changed
one (a renewed token) is picked up, a removed one stops it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
from aiohttp import ClientError

from mdmbus.contract import Registry, default_registry
from mdmbus.identities import role_of
from mdmbus.metrics import Metrics
from mdmbus.regions import CM_DATABASE
from mdmbus.services.connector.client import GatewayClient, GatewayError, TokenFile
from mdmbus.tls import client_ssl_context
from mdmbus.services.stores.pools import open_pool
from mdmbus.services.stores.retry import STORE_ERRORS, until_written
from mdmbus.settings import Settings

__all__ = ["TenantConnector", "run"]

log = logging.getLogger("mdmbus.cm_connector")

_INSERT = """
INSERT INTO relayed_records (record_id, tenant_id, kind, device_id, event_time, body)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[], $6::bytea[])
ORDER BY 2, 1
ON CONFLICT (tenant_id, record_id) DO NOTHING
"""
#: The ids of the batch CM holds with the bytes downloaded, once the INSERT has committed.
_HELD_AS_SENT = """
SELECT r.record_id::text FROM relayed_records r
JOIN unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS b(record_id, tenant_id, body)
  ON r.tenant_id = b.tenant_id AND r.record_id = b.record_id AND r.body = b.body
"""
_CONFLICT = """
INSERT INTO relay_conflicts (tenant_id, record_id)
SELECT $1::uuid, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING record_id
"""


class TenantConnector:
    """One tenant's connector: download, commit to CM, acknowledge, until stopped."""

    def __init__(self, client: GatewayClient, cm: asyncpg.Pool, metrics: Metrics,
                 tenant_id: uuid.UUID | str, contract: Registry | None = None,
                 batch: int = 500, wait_s: float = 5.0) -> None:
        self.client = client
        self.tenant_id = uuid.UUID(str(tenant_id))
        self.cm = cm
        self.metrics = metrics
        self.contract = contract or default_registry()
        self.batch = batch
        self.wait_s = wait_s

    def _row(self, record: dict) -> tuple:
        kind, decoded = self.contract.codec.decode(record["value"])
        env = decoded["envelope"]
        device = env.get("device_id")
        return (uuid.UUID(env["record_id"]), uuid.UUID(env["tenant_id"]), kind,
                None if device is None else uuid.UUID(device), env["event_time"],
                record["value"])

    async def once(self) -> int:
        """One download -> commit -> acknowledge; returns how many records it carried."""
        records = await self.client.download(limit=self.batch, wait=self.wait_s)
        if not records:
            return 0
        decoded = [self._row(r) for r in records]
        rows = [row for row in decoded if row[1] == self.tenant_id]
        if len(rows) < len(decoded):
            self.metrics.relay_foreign.inc(len(decoded) - len(rows))
            log.error("%d downloaded records name another tenant: not stored, not acknowledged",
                      len(decoded) - len(rows))
        if not rows:
            return len(records)
        columns = [list(c) for c in zip(*rows)]

        async def write() -> set[str]:
            async with self.cm.acquire() as conn:
                # The INSERT commits on its own; what CM then holds, read after the commit, is
                # what may be acknowledged.
                await conn.execute(_INSERT, *columns)
                held = {r[0] for r in await conn.fetch(_HELD_AS_SENT, columns[0], columns[1],
                                                       columns[5])}
                differing = [r[0] for r in rows if str(r[0]) not in held]
                if differing:
                    new = await conn.fetch(_CONFLICT, self.tenant_id, differing)
                    self.metrics.relay_conflicts.inc(len(new))
                    log.error("%d relay records conflict with what CM holds under the same id "
                              "(%d newly): kept in the cloud, not acknowledged", len(differing),
                              len(new))
                return held
        held = await until_written(
            write, lambda exc: self.metrics.store_batches.labels("cm", "error").inc())
        self.metrics.store_batches.labels("cm", "ok").inc()
        if not held:
            return len(records)
        acked = [row for row in rows if str(row[0]) in held]
        committed = dt.datetime.now(dt.timezone.utc).isoformat()
        answer = await self.client.ack([str(row[0]) for row in acked], committed)
        for kind, n in Counter(row[2] for row in acked).items():
            self.metrics.relay_downloaded.labels(kind).inc(n)
        if answer["refused"]:
            log.warning("%d acknowledgements refused: %s", len(answer["refused"]),
                        answer["refused"][:3])
        return len(records)

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until stopped. A failed round is retried after a growing pause, whatever the
        failure: the records stay pending in the cloud meanwhile, so nothing is lost, and a
        tenant's loop never ends while its token file is there."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.once()
                delay = 0.5
                continue
            except (ClientError, asyncio.TimeoutError, GatewayError, *STORE_ERRORS) as exc:
                log.warning("connector round failed (%s); retrying in %.1f s", exc, delay)
            except Exception:
                log.exception("connector round failed; retrying in %.1f s", delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 10.0)


async def run(settings: Settings, stop: asyncio.Event, metrics: Metrics) -> None:
    """Serves every tenant with a token file in settings.cm_tokens_path."""
    metrics.prime(("cm",))
    cm = await until_written(lambda: open_pool(settings, CM_DATABASE, role_of("cm-connector"),
                                               max_size=4, application="mdmbus-cm-connector"),
                             lambda exc: metrics.store_batches.labels("cm", "error").inc())
    ssl_context = client_ssl_context(settings.ca_path)
    running: dict[Path, tuple[float, asyncio.Event, asyncio.Task, GatewayClient]] = {}
    try:
        while not stop.is_set():
            seen = set()
            for path in sorted(settings.cm_tokens_path.glob("*.json")):
                try:
                    stamp = path.stat().st_mtime
                except FileNotFoundError:  # removed since the listing
                    continue
                seen.add(path)
                if path in running and running[path][0] == stamp and not running[path][2].done():
                    continue
                if path in running:  # a renewed token: restart the tenant's loop with it
                    await _stop(running.pop(path))
                try:
                    token = TokenFile.read(path)
                except (ValueError, KeyError, OSError) as exc:
                    log.warning("cannot read token file %s: %s", path, exc)
                    continue
                client = GatewayClient(token.gateway, token.token, ssl_context)
                own_stop = asyncio.Event()
                task = asyncio.create_task(TenantConnector(client, cm, metrics,
                                                               token.tenant_id).run(own_stop))
                running[path] = (stamp, own_stop, task, client)
            for path in set(running) - seen:
                await _stop(running.pop(path))
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
    finally:
        for entry in running.values():
            await _stop(entry)
        await cm.close()


async def _stop(entry: tuple[float, asyncio.Event, asyncio.Task, GatewayClient]) -> None:
    _, own_stop, task, client = entry
    own_stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
