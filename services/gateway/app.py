"""The gateway's HTTP application for one region (aiohttp): the routes of openapi.yaml.

Every request carries a bearer token (tokens.py); the token's tenant is the only tenant the
request can read, write or delete, and a tenant living in another region is sent to its own
region's gateway. Answers never hold anything of another tenant, errors included: a record
naming another tenant is refused without echoing it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web

from mdmbus import jsonlines
from mdmbus.clock import Clock
from mdmbus.codec import CodecError
from mdmbus.contract import Registry, ValidationError, from_json, to_json
from mdmbus.contract.limits import MAX_RECORD_BYTES, is_canonical_uuid
from mdmbus.contract.verdict import Refused, check_message
from mdmbus.metrics import Metrics
from mdmbus.producer import prepare_record
from mdmbus.services.export import export_page
from mdmbus.services.gateway import privacy_api, privacy_center
from mdmbus.services.gateway.access import (NOT_ONBOARDED, TENANT_DELETED, WRONG_REGION,
                                            allowed, tenant_refusal)
from mdmbus.services.gateway.guards import (ROUTE_KINDS, SlotsFull, StoreBusy, TenantSlots,
                                            bound_send_buffer, bounded_acquire)
from mdmbus.services.gateway.tokens import Caller, TokenError, TokenVerifier
from mdmbus.services.rules import delete_after_download as relay
from mdmbus.services.stores import directory, erasure_receipts, holdings
from mdmbus.services.stores.pools import hold_to_tenant
from mdmbus.services.stores.retry import STORE_ERRORS, outage
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name
from mdmbus.services.stores.pools import Connection

__all__ = ["Gateway", "Limits", "build_app", "LIMITS"]

log = logging.getLogger("mdmbus.gateway")


@dataclass(frozen=True)
class Limits:
    """What one request may hold (stated in openapi.yaml, enforced here)."""

    #: Bytes of a request body; larger bodies get 413 before they are read.
    request_bytes: int = 8 * 1024 * 1024
    #: Records in one upload, ids in one acknowledgement.
    records: int = 5000
    #: Relay records in one download.
    download: int = 1000
    #: Seconds a client has to send its body; a slower one gets 408
    #: (MDMBUS_GATEWAY_BODY_TIMEOUT).
    body_seconds: float = 30.0
    #: Seconds a relay download waits for a record when none is pending.
    wait_seconds: float = 30.0
    #: Seconds a deletion request waits for the erasure to complete before answering 202.
    erasure_seconds: float = 30.0
    #: Seconds the records of one request may take to be acknowledged by Kafka before the
    #: answer is 503 with Retry-After (MDMBUS_GATEWAY_PRODUCE_TIMEOUT).
    produce_seconds: float = 10.0
    #: The Retry-After of that answer: about the time a dead broker's partitions take to move.
    produce_retry_after: int = 5


LIMITS = Limits()
#: Bytes an export gathers before it writes them to the client.
_CHUNK_BYTES = 64 * 1024
#: Where a request keeps its tenant's slot until the error middleware releases it.
_SLOT = "mdmbus.tenant_slot"
#: Content types of an upload.
NDJSON = "application/x-ndjson"
AVRO_BATCH = "application/vnd.mdmbus.avro-batch"


class ClientGone(Exception):
    """The client went away, or stopped reading, in the middle of an answer: counted as
    aborted, never as a store outage (aiohttp's errors for it are OSErrors too)."""


class ItemRefused(Exception):
    """One record of an upload refused: the others of the batch are still taken."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra, self.headers = status, code, extra, headers


@dataclass
class Gateway:
    """What one region's gateway holds: its stores, producers, verifier, metrics."""

    settings: Settings
    region: str
    pool: asyncpg.Pool
    directory_pool: asyncpg.Pool
    #: A started AIOKafkaProducer on the region's cluster, as the region's gateway: uploads and
    #: deletion requests, each to the region's own topic.
    producer: Any
    verifier: TokenVerifier
    metrics: Metrics
    contract: Registry
    clock: Clock
    limits: Limits = field(default_factory=Limits)
    #: Requests in flight per tenant and kind of route (shared by the process's regions would
    #: be wrong: each region's gateway has its own).
    slots: TenantSlots | None = None

    def __post_init__(self) -> None:
        if self.slots is None:
            self.slots = TenantSlots(dict(self.settings.gateway_tenant_slots))

    # ------------------------------------------------------------------ plumbing

    def caller(self, request: web.Request, route: str) -> Caller:
        """The token's caller, allowed ``route`` by its role, holding one of its tenant's slots
        for the route's kind until the request ends (released by the error middleware)."""
        try:
            caller = self.verifier.verify(request.headers.get("Authorization"))
        except TokenError as exc:
            self.metrics.gateway_tokens_refused.labels(exc.reason).inc()
            raise ApiError(401, "invalid_token", str(exc), reason=exc.reason) from None
        if not allowed(route, caller.role):
            raise ApiError(403, "forbidden", f"role {caller.role!r} may not call {route}")
        assert self.slots is not None
        slot = self.slots.hold(caller.tenant, ROUTE_KINDS[route])
        try:
            slot.__enter__()
        except SlotsFull as exc:
            raise ApiError(429, "too_many_requests", f"{exc}; retry when one has finished",
                           headers={"Retry-After": "1"}) from None
        request[_SLOT] = slot
        return caller

    @contextlib.asynccontextmanager
    async def as_tenant(self, pool: asyncpg.Pool,
                        tenant: uuid.UUID) -> AsyncIterator[Connection]:
        """A connection that sees and changes only ``tenant``'s rows: the gateway's role is
        held to the tenant named by ``mdmbus.tenant`` by row-level security
        (mdmbus/identities.py), so a query that forgot its tenant filter finds nothing of
        another tenant. The setting is the session's, one round trip, and is undone when the
        connection goes back to the pool (asyncpg resets every released connection with
        RESET ALL, and closes one it cannot reset)."""
        async with bounded_acquire(pool, self.settings.gateway_acquire_timeout_s) as conn:
            await hold_to_tenant(conn, tenant)
            yield conn

    async def entry(self, caller: Caller, *, purged_ok: bool = False) -> directory.Entry:
        """The caller's tenant, which must live in this region."""
        async with self.as_tenant(self.directory_pool, caller.tenant) as conn:
            entry = (await directory.entries(conn, [caller.tenant])).get(caller.tenant)
        refusal = tenant_refusal(entry, self.region, purged_ok=purged_ok)
        if refusal == NOT_ONBOARDED or entry is None:
            raise ApiError(403, NOT_ONBOARDED, "the token's tenant is not onboarded")
        if refusal == WRONG_REGION:
            raise ApiError(421, WRONG_REGION,
                           f"this tenant's data lives in region {entry.region}: call "
                           f"{self.settings.gateway_url(entry.region)}", region=entry.region,
                           gateway=self.settings.gateway_url(entry.region))
        if refusal == TENANT_DELETED:
            raise ApiError(410, TENANT_DELETED, "this tenant's data has been deleted")
        return entry

    async def body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.limits.request_bytes:
            raise ApiError(413, "request_too_large",
                           f"a request body may hold {self.limits.request_bytes} bytes")
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                return await request.read()
        except TimeoutError:
            raise ApiError(408, "request_timeout",
                           f"the body did not arrive within {self.limits.body_seconds:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "request_too_large",
                           f"a request body may hold {self.limits.request_bytes} bytes") from None

    # ------------------------------------------------------------------ upload

    def _records_of(self, body: bytes, content_type: str) -> list[tuple[int, Any]]:
        """(index, item) of each record in the body: a JSON line's parsed value or an Avro
        message's bytes; a line that is not JSON becomes an ApiError-free refusal later."""
        items: list[tuple[int, Any]] = []
        if content_type == NDJSON:
            for line in body.split(b"\n"):
                if line.strip():
                    items.append((len(items), line))
            return items
        if content_type == AVRO_BATCH:
            pos = 0
            while pos < len(body):
                if pos + 4 > len(body):
                    raise ApiError(400, "bad_framing", "an Avro batch is a sequence of 4-byte "
                                   "big-endian lengths, each followed by one message")
                (size,) = struct.unpack_from(">I", body, pos)
                pos += 4
                if pos + size > len(body):
                    raise ApiError(400, "bad_framing", f"message {len(items)} is cut short")
                items.append((len(items), body[pos:pos + size]))
                pos += size
            return items
        raise ApiError(415, "unsupported_media_type",
                       f"upload {NDJSON} (one {{\"kind\", \"record\"}} a line) or {AVRO_BATCH}")

    def _checked(self, item: bytes, avro: bool) -> tuple[str, dict, bytes]:
        """(kind, record, encoded value) of a valid record; ItemRefused says why not."""
        if avro:
            verdict = check_message(self.contract, item, None, None)
            if isinstance(verdict, Refused):
                # The gateway sets the key itself: a record refused only for its key is valid.
                if verdict.reason != "missing_key" or verdict.decoded is None:
                    raise ItemRefused(verdict.reason, _safe_message(verdict.reason, verdict.path))
                kind, record = verdict.decoded
            else:
                kind, record = verdict
            return kind, record, item
        if len(item) > 4 * MAX_RECORD_BYTES:  # its JSON cannot encode under the limit
            raise ItemRefused("oversized", f"a record may hold {MAX_RECORD_BYTES} bytes encoded")
        try:
            line = jsonlines.loads(item, self.settings.json_max_depth)
        except jsonlines.TooDeep as exc:
            raise ItemRefused(exc.reason, str(exc)) from None
        except ValueError:
            raise ItemRefused("invalid_json", "not a JSON value") from None
        if not isinstance(line, dict) or set(line) != {"kind", "record"}:
            raise ItemRefused("invalid_line", 'expected an object with exactly "kind" and "record"')
        kind = line["kind"]
        try:
            record = from_json(self.contract.spec(kind).expanded, line["record"])
            produced = prepare_record(kind, record, self.contract)
        except ValidationError as exc:
            raise ItemRefused(exc.reason, _safe_message(exc.reason, exc.path)) from None
        except CodecError:
            raise ItemRefused("schema_mismatch", "the record does not fit its schema") from None
        return kind, record, produced.value

    async def upload(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "upload")
        entry = await self.entry(caller)
        if entry.state != directory.ACTIVE:
            raise ApiError(403, "tenant_in_retention", "the tenant is in its read-only retention "
                           "period: no new writes", read_only_until=_iso(entry.read_only_until))
        content_type = request.content_type
        items = self._records_of(await self.body(request), content_type)
        if len(items) > self.limits.records:
            raise ApiError(413, "too_many_records", f"an upload may hold {self.limits.records} "
                           "records")
        topic = topic_name(TopicKind.UPLOAD, self.region)
        accepted, refused, valid = [], [], []
        for index, item in items:
            try:
                kind, record, value = self._checked(item, content_type == AVRO_BATCH)
            except ItemRefused as exc:
                refused.append({"index": index, "reason": exc.reason, "message": exc.message})
                continue
            if str(record["envelope"]["tenant_id"]) != str(caller.tenant):
                refused.append({"index": index, "reason": "foreign_tenant", "message":
                                "the record names a tenant other than the token's"})
                continue
            if self.contract.spec(kind).topic != TopicKind.UPLOAD:
                refused.append({"index": index, "reason": "wrong_topic", "message":
                                f"{kind} records are not uploaded by tenants"})
                continue
            valid.append((index, kind, record, value))
        taken = await self._ids_held(caller.tenant, [str(r["envelope"]["record_id"])
                                                     for _, _, r, _ in valid])
        to_send, seen = [], set()
        for index, kind, record, value in valid:
            record_id = str(record["envelope"]["record_id"])
            if record_id in taken or record_id in seen:
                reason = "record_id_taken" if record_id in taken else "repeated_record_id"
                refused.append({"index": index, "reason": reason, "message":
                                "the tenant already holds a record with this id" if record_id
                                in taken else "this record id is given twice in the upload"})
                continue
            seen.add(record_id)
            to_send.append((value, self.contract.key(kind, record)))
            accepted.append({"index": index, "record_id": record_id, "kind": kind})
        await self._produce(topic, to_send)  # acks=all: accepted means durable in Kafka
        for r in refused:
            self.metrics.gateway_upload_refused.labels(self.region, r["reason"]).inc()
        return web.json_response({"accepted": accepted, "refused": refused},
                                 status=200 if not refused else 207)

    async def _produce(self, topic: str,
                       messages: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Sends (value, key) pairs to ``topic`` and waits until Kafka acknowledges every one
        (acks=all), for at most ``limits.produce_seconds``; then ApiError 503 with Retry-After.
        The producer is idempotent and keeps sending what it holds, so a refused request may
        still be stored: sent again, its records already held are refused as record_id_taken
        and the others stored once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.produce_seconds
        futures = []
        try:
            async with asyncio.timeout_at(deadline):  # send() waits for metadata, buffer room
                for value, key in messages:
                    futures.append(await self.producer.send(topic, value=value, key=key))
        except TimeoutError:
            raise self._kafka_unavailable(topic, len(futures), len(messages)) from None
        if not futures:
            return
        # asyncio.wait, not a timeout around gather: the producer's futures are its own and
        # are not to be cancelled.
        _, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        if pending:
            raise self._kafka_unavailable(topic, len(futures) - len(pending), len(messages))
        for future in futures:
            future.result()  # a refusal by Kafka (not a delay) is a fault: raised

    def _kafka_unavailable(self, topic: str, acknowledged: int, total: int) -> ApiError:
        self.metrics.gateway_kafka_unavailable.labels(self.region).inc()
        log.warning("%s: %d of %d records acknowledged by Kafka within %g s: 503",
                    topic, acknowledged, total, self.limits.produce_seconds)
        return ApiError(503, "kafka_unavailable", f"Kafka did not acknowledge the records within "
                        f"{self.limits.produce_seconds:g} s (a broker away, its partitions "
                        "moving to new leaders): none is confirmed; send the request again",
                        headers={"Retry-After": str(self.limits.produce_retry_after)})

    def _json(self, body: bytes) -> Any:
        try:
            return jsonlines.loads(body, self.settings.json_max_depth)
        except jsonlines.TooDeep as exc:
            raise ApiError(400, exc.reason, str(exc)) from None
        except ValueError:
            raise ApiError(400, "invalid_json", "the body is not JSON") from None

    async def _ids_held(self, tenant: uuid.UUID, record_ids: list[str]) -> set[str]:
        async with self.as_tenant(self.pool, tenant) as conn:
            return await holdings.ids_held(conn, tenant, record_ids)

    # ------------------------------------------------------------------ relay

    async def relay_download(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "relay_download")
        await self.entry(caller)
        limit = _int_param(request, "limit", 100, 1, self.limits.download)
        wait = _float_param(request, "wait", 0.0, 0.0, self.limits.wait_seconds)
        deadline = time.monotonic() + wait
        while True:
            async with self.as_tenant(self.pool, caller.tenant) as conn:
                rows = await relay.pending(conn, caller.tenant, limit)
            if rows or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return web.json_response({"records": [
            {"record_id": str(r["record_id"]), "kind": r["kind"],
             "event_time": _iso(r["event_time"]),
             "value": base64.b64encode(r["body"]).decode("ascii")} for r in rows]})

    async def relay_ack(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "relay_ack")
        await self.entry(caller)
        body = self._json(await self.body(request))
        ids_in = body.get("record_ids") if isinstance(body, dict) else None
        if not isinstance(ids_in, list) or len(ids_in) > self.limits.records:
            raise ApiError(400, "bad_request", f"expected {{\"record_ids\": [...]}} with at most "
                           f"{self.limits.records} ids")
        ids = [uuid.UUID(v) for v in ids_in if is_canonical_uuid(v)]
        malformed = [str(v) for v in ids_in if not is_canonical_uuid(v)]
        lag = 0.0
        committed = body.get("cm_committed_at")
        if isinstance(committed, str):
            try:
                lag = max(0.0, time.time() - dt.datetime.fromisoformat(committed).timestamp())
            except ValueError:
                raise ApiError(400, "bad_request", "cm_committed_at is not ISO-8601") from None
        async with self.as_tenant(self.pool, caller.tenant) as conn:
            outcome = await relay.acknowledge(conn, self.region, caller.tenant, ids,
                                              self.clock.now_dt(), lag)
        self.metrics.count_deletions(outcome.deletions)
        return web.json_response({
            "deleted": [str(i) for i in outcome.deleted],
            "already_deleted": [str(i) for i in outcome.already],
            "refused": [{"record_id": str(i), "reason": "not_pending_for_tenant"}
                        for i in outcome.unknown]
                       + [{"record_id": v[:40], "reason": "not_a_uuid"} for v in malformed]})

    # ------------------------------------------------------------------ export, status

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every held record of the tenant, a JSON line each, read page by page
        (services/export.py): no database connection is held while a page is written, and a
        client that does not read a page within the write timeout is cut."""
        caller = self.caller(request, "export")
        await self.entry(caller)
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-store"})
        bound_send_buffer(request.transport)  # an unread export stops early (guards.py)
        await response.prepare(request)
        count, after = 0, None
        while True:
            async with self.as_tenant(self.pool, caller.tenant) as conn:
                page, after = await export_page(conn, caller.tenant, after,
                                                contract=self.contract)
            chunk: list[bytes] = []
            size = 0
            for kind, record in page:
                line = json.dumps({"kind": kind, "record": to_json(
                    self.contract.spec(kind).expanded, record)}).encode() + b"\n"
                chunk.append(line)
                size += len(line)
                if size >= _CHUNK_BYTES:  # a client that left is seen soon
                    await self._write(request, response, b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                await self._write(request, response, b"".join(chunk))
            count += len(page)
            if after is None:
                break
        await response.write_eof()
        log.info("exported %d records of a tenant in %s", count, self.region)
        return response

    async def _write(self, request: web.Request, response: web.StreamResponse,
                     chunk: bytes) -> None:
        """One write to the client, bounded: a client that stops reading is cut (its
        connection aborted), so its buffers and its tenant's slot come back. A client that
        left is noticed here: asyncio discards writes to a broken connection without an error,
        and tells the protocol only when the loop runs, hence the check and the yield."""
        if request.transport is None or request.transport.is_closing():
            raise ClientGone("the client went away")
        try:
            async with asyncio.timeout(self.settings.gateway_write_timeout_s):
                await response.write(chunk)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
            raise ClientGone("the client did not read within the write timeout") from None
        except ConnectionError as exc:  # aiohttp: "Connection lost" while draining, and kin
            raise ClientGone(f"the client went away ({type(exc).__name__})") from None
        await asyncio.sleep(0)

    async def status(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "status")
        entry = await self.entry(caller, purged_ok=True)
        async with self.as_tenant(self.pool, caller.tenant) as conn:
            rows = await holdings.held_counts(conn, caller.tenant)
            pending, oldest = await relay.pending_summary(conn, caller.tenant)
        return web.json_response({
            "tenant_id": str(caller.tenant), "region": entry.region, "state": entry.state,
            "read_only_until": _iso(entry.read_only_until), "purge_at": _iso(entry.purge_at),
            "rows": rows, "relay_pending": pending,
            "relay_oldest_pending_s": None if oldest is None else round(
                (dt.datetime.now(dt.timezone.utc) - oldest).total_seconds(), 3)})

    # ------------------------------------------------------------------ deletion

    async def deletion_request(self, request: web.Request) -> web.Response:
        """A deletion request: sent on the region's deletion-request topic, applied by the
        region's pipeline at once (the one path every deletion takes); answered with the
        erasure receipt once the purge is done (202 with its location if it takes longer)."""
        caller = self.caller(request, "deletion_request")
        await self.entry(caller)  # onboarded here, and not deleted yet
        receipt_id = uuid.uuid4()
        now = self.clock.now_dt()
        record = {"envelope": {"record_id": str(receipt_id), "tenant_id": str(caller.tenant),
                               "device_id": None, "user_id": None, "event_time": now,
                               "kind": "tenant_deletion_requested"}}
        produced = prepare_record("tenant_deletion_requested", record, self.contract)
        async with self.as_tenant(self.pool, caller.tenant) as conn:
            await erasure_receipts.open_receipt(conn, receipt_id, caller.tenant, now)
        await self._produce(topic_name(TopicKind.DELETION_REQUESTS, self.region),
                            [(produced.value, produced.key)])
        deadline = time.monotonic() + self.limits.erasure_seconds
        while time.monotonic() < deadline:
            receipt = await self._receipt(caller.tenant, receipt_id)
            if receipt is not None and receipt["completed_at"] is not None:
                return web.json_response(receipt)
            await asyncio.sleep(0.1)
        return web.json_response({"receipt_id": str(receipt_id), "status": "in_progress",
                                  "location": f"/v1/erasure-receipts/{receipt_id}"}, status=202)

    async def _receipt(self, tenant: uuid.UUID, receipt_id: uuid.UUID) -> dict | None:
        """The receipt, completed from the deletion audit once the tenant is purged."""
        async with self.as_tenant(self.pool, tenant) as conn:
            row = await erasure_receipts.receipt_row(conn, tenant, receipt_id)
        if row is None:
            return None
        if row["completed_at"] is None:
            async with self.as_tenant(self.directory_pool, tenant) as conn:
                entry = (await directory.entries(conn, [tenant])).get(tenant)
            if entry is None or entry.state != directory.PURGED:
                return erasure_receipts.receipt_json(row)
            async with self.as_tenant(self.pool, tenant) as conn:
                row = await erasure_receipts.complete_receipt(conn, tenant, receipt_id,
                                                              self.clock.now_dt())
            if row is None:  # the receipt is gone since it was read: as if never made
                return None
        return erasure_receipts.receipt_json(row)

    async def erasure_receipt(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "erasure_receipt")
        await self.entry(caller, purged_ok=True)
        try:
            receipt_id = uuid.UUID(request.match_info["receipt_id"])
        except ValueError:
            raise ApiError(404, "not_found", "no such receipt") from None
        receipt = await self._receipt(caller.tenant, receipt_id)
        if receipt is None:
            raise ApiError(404, "not_found", "no such receipt")
        return web.json_response(receipt, status=200 if receipt["completed_at"] else 202)

    # ------------------------------------------------------------------ privacy center reads

    async def holdings(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "holdings")
        return await privacy_api.holdings(self, caller, await self.entry(caller, purged_ok=True))

    async def erasure_receipts(self, request: web.Request) -> web.Response:
        caller = self.caller(request, "erasure_receipts")
        await self.entry(caller, purged_ok=True)
        return await privacy_api.erasure_receipts(self, caller)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()


def _safe_message(reason: str, path: str) -> str:
    """A refusal's text without the record's values (which may be another tenant's)."""
    return f"{reason} at {path}" if path else reason




def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name} must be between {low} and {high}")
    return value


def _float_param(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    try:
        value = default if raw is None else float(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be a number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name} must be between {low:g} and {high:g}")
    return value


#: (method, path, route name) of every route: the one list openapi.yaml is checked against.
ROUTES = (
    ("POST", "/v1/records", "upload"),
    ("GET", "/v1/relay", "relay_download"),
    ("POST", "/v1/relay/ack", "relay_ack"),
    ("GET", "/v1/export", "export"),
    ("GET", "/v1/status", "status"),
    ("POST", "/v1/deletion-request", "deletion_request"),
    ("GET", "/v1/erasure-receipts/{receipt_id}", "erasure_receipt"),
    ("GET", "/v1/holdings", "holdings"),
    ("GET", "/v1/erasure-receipts", "erasure_receipts"),
)


def build_app(gateway: Gateway) -> web.Application:
    """The aiohttp application of one region's gateway."""
    m = gateway.metrics

    @web.middleware
    async def errors(request: web.Request, handler: Callable[[web.Request],
                                                             Awaitable[web.StreamResponse]]):
        route = getattr(request.match_info.route, "name", None) or "unknown"
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ApiError as exc:
            headers = dict(exc.headers or {})
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            response = web.json_response({"error": exc.code, "message": str(exc), **exc.extra},
                                         status=exc.status, headers=headers)
        except StoreBusy as exc:  # the region's connections all busy for the bound: not a fault
            m.gateway_store_busy.labels(gateway.region, route).inc()
            response = web.json_response({"error": "store_busy", "message": f"{exc}; retry "
                                          "later"}, status=503, headers={"Retry-After": "1"})
        except web.HTTPException as exc:
            response = web.json_response({"error": exc.reason.lower().replace(" ", "_"),
                                          "message": exc.text or exc.reason}, status=exc.status)
        except (ClientGone, ConnectionResetError, asyncio.CancelledError):
            # The client went away (aiohttp's ClientConnectionResetError, a ConnectionResetError
            # and so an OSError): before STORE_ERRORS, which would call it a store outage.
            m.gateway_requests.labels(gateway.region, route, "aborted").inc()
            raise
        except STORE_ERRORS as exc:  # the region store away or a lock cycle broken: retry
            if not outage(exc):  # a certificate no longer trusted: a fault, said as one
                log.error("%s %s: the region store cannot be reached as configured: %s",
                          request.method, route, exc)
            log.warning("%s %s: store unavailable (%s)", request.method, route,
                        type(exc).__name__)
            response = web.json_response({"error": "store_unavailable", "message":
                                          "the region store is unavailable; retry later"},
                                         status=503, headers={"Retry-After": "1"})
        except Exception:
            log.exception("%s %s failed", request.method, route)
            response = web.json_response({"error": "internal", "message": "internal error"},
                                         status=500)
        finally:
            slot = request.get(_SLOT)
            if slot is not None:
                request.pop(_SLOT).__exit__(None, None, None)
        m.gateway_requests.labels(gateway.region, route, str(response.status)).inc()
        m.gateway_request_seconds.labels(gateway.region, route).observe(
            time.perf_counter() - started)
        return response

    app = web.Application(middlewares=[errors], client_max_size=gateway.limits.request_bytes)
    for method, path, name in ROUTES:
        app.router.add_route(method, path, getattr(gateway, name), name=name)
    privacy_center.add_routes(app, gateway)
    return app
