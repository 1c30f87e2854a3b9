"""The regional HTTPS gateway (services/gateway, docs/design.md section 6) against the real
processes, broker and databases: isolation between tenants, the bearer tokens, bad input and
misbehaving clients, and the upload path (acks=all before the answer).

The pipeline and the gateway of every region run as real processes (through the launcher) on
a clock at real speed: tokens are checked against real time. The gateway serves /metrics on a
free port, read to check what it counts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from mdmbus.cli.launcher import Launcher
from mdmbus.contract import to_json
from mdmbus.contract.limits import MAX_RECORD_BYTES
from mdmbus.regions import REGIONS
from mdmbus.tls import client_ssl_context
from mdmbus.services.gateway.access import ALLOWED, ROLES
from mdmbus.services.gateway.app import AVRO_BATCH, LIMITS, NDJSON, ROUTES
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, listening
from tests.ports import free_port

pytestmark = pytest.mark.integration

#: How long the pipeline may take to store what was produced (it shares 2 cores with others).
STORED_S = 90.0


# ----------------------------------------------------------------------------- the system

@dataclass
class System:
    procs: Launcher
    metrics_port: int

    @property
    def clock(self):
        return self.procs.clock

    @property
    def log_dir(self):
        return self.procs.log_dir


#: The gateway's body limit in this module (the default, 30 s, would make a slow test).
BODY_TIMEOUT_S = 6.0


@pytest.fixture(scope="module")
async def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("gateway"), speed=1.0)
    port = free_port()
    try:
        procs.start("pipeline", "all")
        procs.start("gateway", "all", metrics_port=port,
                    env={"MDMBUS_GATEWAY_BODY_TIMEOUT": str(BODY_TIMEOUT_S)})

        def up() -> bool:
            procs.assert_alive()
            return all(listening(stack.gateway_ports[r]) for r in REGIONS) and listening(port)
        await wait_for(up, 90, "the gateways and their /metrics", interval_s=0.2)
        # The pipeline is up once it applies an onboarding.
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as w:
            probe = await w.onboard("eu")

            async def onboarded() -> bool:
                procs.assert_alive()
                return await w.tenant_region(probe) == "eu"
            await wait_for(onboarded, 120, "the pipeline applying an onboarding", interval_s=0.2)
        yield System(procs, port)
    finally:
        procs.stop()


@pytest.fixture
async def work(stack, system):
    async with Workload(stack, system.clock, seed=uuid.uuid4().int,
                        tokens_dir=system.log_dir / "tokens") as w:
        yield w
    system.procs.assert_alive()


@dataclass
class Answer:
    status: int
    text: str
    headers: Any

    @property
    def body(self) -> Any:
        return json.loads(self.text)


class Door:
    """Raw HTTPS calls to the gateways: the status, the exact text and the headers of every
    answer (the tests look for other tenants' ids in the text, not in a parsed form)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl_context(settings.ca_path)),
            timeout=aiohttp.ClientTimeout(total=120))

    async def call(self, region: str, method: str, path: str, token: str | None = None, *,
                   authorization: str | None = None, data: Any = None, json_body: Any = None,
                   content_type: str | None = None, params: dict | None = None) -> Answer:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(method, self.settings.gateway_url(region) + path,
                                        headers=headers, data=data, json=json_body,
                                        params=params) as response:
            return Answer(response.status, await response.text(), response.headers)

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def door(stack):
    d = Door(stack)
    yield d
    await d.close()


# ----------------------------------------------------------------------------- helpers

def _line(work: Workload, kind: str, record: dict) -> dict:
    return {"kind": kind, "record": to_json(work.contract.spec(kind).expanded, record)}


def _ndjson(lines: Iterable[dict | bytes]) -> bytes:
    return b"".join((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n"
                    for item in lines)


def _framed(messages: Iterable[bytes]) -> bytes:
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


def _id(record: dict) -> str:
    return str(record["envelope"]["record_id"])


async def _has(work: Workload, region: str, ids: Iterable[str]) -> bool:
    ids = list(ids)
    return await work.stored(region, ids) == set(ids)


async def _nowhere(work: Workload, ids: Iterable[str]) -> bool:
    return await work.anywhere(ids) == {r: set() for r in REGIONS}


def _upload_topic(region: str) -> str:
    return topic_name(TopicKind.UPLOAD, region)


async def _upload_offsets(work: Workload, region: str) -> dict[int, int]:
    """partition -> end offset of the region's upload topic (the high watermark: what acks=all
    producers have written; the pipeline's truncation of transit copies leaves it alone)."""
    ends = await work.end_offsets(_upload_topic(region))
    return {tp.partition: offset for tp, offset in ends.items()}


def _grown(before: dict, after: dict) -> dict[int, int]:
    return {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p, 0)}


async def _settle(work: Workload, tenant: str, region: str) -> str:
    """Uploads one marker record for the tenant and waits until it is stored. The gateway
    produces a tenant's uploads on one partition (keyed by the tenant) and the pipeline stores
    a partition in order, so whatever the gateway had produced for the tenant before is
    stored (or refused) by then: the synchronisation point of "nothing was written"."""
    marker = work.make("U12", tenant)
    client = work.client(tenant, "connector")
    answer = await client.upload([_line(work, "U12", marker)])
    assert [a["record_id"] for a in answer["accepted"]] == [_id(marker)]
    await wait_for(lambda: _has(work, region, [_id(marker)]), STORED_S, "the marker stored")
    return _id(marker)


def _metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def metric(port: int, name: str, **labels: str) -> float:
    return await asyncio.to_thread(_metric, port, name, **labels)


def _issuer_key(settings: Settings):
    return serialization.load_pem_private_key(
        (settings.issuer_dir / "signing.key").read_bytes(), None)


def _kid(settings: Settings) -> str:
    return json.loads((settings.issuer_dir / "jwks.json").read_text())["keys"][0]["kid"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


DROP = object()


def _claims(settings: Settings, tenant: str, **over: Any) -> dict:
    now = int(time.time())
    claims = {"iss": settings.token_issuer, "aud": settings.token_audience,
              "sub": f"test@{tenant}", "tid": tenant, "roles": ["admin"], "iat": now,
              "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    for name, value in over.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _signed(settings: Settings, claims: dict, key=None, kid: str | None = ...) -> str:
    headers = {} if kid is None else {"kid": _kid(settings) if kid is ... else kid}
    return jwt.encode(claims, key or _issuer_key(settings), algorithm="ES256", headers=headers)


def _unsigned(settings: Settings, claims: dict) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": _kid(settings)}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(settings: Settings, claims: dict) -> str:
    """Key confusion: HMAC-SHA256 keyed with the issuer's public key (PEM), which a verifier
    that let the token pick the algorithm would accept."""
    public = _issuer_key(settings).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": _kid(settings)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _path(path: str) -> str:
    return path.replace("{receipt_id}", str(uuid.uuid4()))


# ----------------------------------------------------------------------------- 1. isolation

async def test_a_tenant_sees_and_touches_only_its_own_data(work, door, stack):
    region = "eu"
    a, b = await work.onboarded(region), await work.onboarded(region)
    a_dev, b_dev = work.factory.uuid(), work.factory.uuid()
    a_relay = [await work.produce(k, a, device_id=a_dev) for k in ("R1", "R2", "R4")]
    b_relay = [await work.produce(k, b, device_id=b_dev) for k in ("R1", "R2", "R4", "R5", "R6")]
    a_up = [await work.produce(k, a) for k in ("U1", "U9")]
    b_up = [await work.produce(k, b) for k in ("U1", "U4", "U9", "U11")]
    a_ids = {_id(r) for r in a_relay + a_up}
    b_ids = {_id(r) for r in b_relay + b_up}
    b_relay_ids = [_id(r) for r in b_relay]
    await wait_for(lambda: _has(work, region, a_ids | b_ids), STORED_S, "every record stored")
    b_secrets = [b, b_dev, *b_ids]

    def leaks(text: str) -> list[str]:
        return [s for s in b_secrets if s in text]

    tokens = {role: work.token(a, role) for role in ROLES}

    # Relay download (connector only): A's pending records, none of B's.
    got = await door.call(region, "GET", "/v1/relay", tokens["connector"],
                          params={"limit": LIMITS.download})
    assert got.status == 200, got.text
    assert {r["record_id"] for r in got.body["records"]} == {_id(r) for r in a_relay}
    assert not leaks(got.text)

    # Acknowledging B's relay ids with A's token deletes nothing: every id refused.
    acked = await door.call(region, "POST", "/v1/relay/ack", tokens["connector"],
                            json_body={"record_ids": b_relay_ids})
    assert acked.status == 200, acked.text
    assert acked.body["deleted"] == [] and acked.body["already_deleted"] == []
    assert sorted(r["record_id"] for r in acked.body["refused"]) == sorted(b_relay_ids)
    assert {r["reason"] for r in acked.body["refused"]} == {"not_pending_for_tenant"}
    assert await work.stored(region, b_relay_ids) == set(b_relay_ids), "B's cloud copies deleted"
    assert await work.region_pool(region).fetchval(
        "SELECT count(*) FROM deletion_audit WHERE record_ids && $1::uuid[]",
        [uuid.UUID(i) for i in b_relay_ids]) == 0
    b_sees = await work.client(b, "connector").download(limit=LIMITS.download)
    assert {r["record_id"] for r in b_sees} == set(b_relay_ids)

    # Export (admin, auditor): exactly A's records.
    for role in ("admin", "auditor"):
        exported = await door.call(region, "GET", "/v1/export", tokens[role])
        assert exported.status == 200, exported.text
        lines = [json.loads(x) for x in exported.text.splitlines() if x.strip()]
        assert {x["record"]["envelope"]["record_id"] for x in lines} == a_ids, role
        assert {x["record"]["envelope"]["tenant_id"] for x in lines} == {a}
        assert not leaks(exported.text), role

    # Status (every role): A's counts only (B holds more of each).
    for role in ROLES:
        status = await door.call(region, "GET", "/v1/status", tokens[role])
        assert status.status == 200, status.text
        assert status.body["tenant_id"] == a and status.body["region"] == region
        assert status.body["rows"] == {"relay": len(a_relay), "upload": len(a_up)}, role
        assert status.body["relay_pending"] == len(a_relay), role
        assert not leaks(status.text), role

    # A's own ids and B's in one acknowledgement: A's deleted, B's refused and kept.
    acked = await door.call(region, "POST", "/v1/relay/ack", tokens["connector"],
                            json_body={"record_ids": [i for pair in zip(
                                [_id(r) for r in a_relay], b_relay_ids) for i in pair]})
    assert acked.status == 200, acked.text
    assert sorted(acked.body["deleted"]) == sorted(_id(r) for r in a_relay)
    assert sorted(r["record_id"] for r in acked.body["refused"]) == sorted(b_relay_ids[:3])
    assert await work.stored(region, b_relay_ids) == set(b_relay_ids), "B's cloud copies deleted"
    assert not await work.stored(region, [_id(r) for r in a_relay])
    assert Counter(await work.audited(region, "delete_after_download",
                                      [_id(r) for r in a_relay] + b_relay_ids)) == \
        Counter(_id(r) for r in a_relay)

    # Uploading a record naming B (connector, admin; JSON lines and Avro): refused at its
    # index, its neighbours accepted, nothing of B echoed, nothing of B stored.
    offsets = await _upload_offsets(work, region)
    foreign, accepted_ids = [], []
    for role in ("connector", "admin"):
        mine1, theirs, mine2 = work.make("U9", a), work.make("U9", b), work.make("U4", a)
        # B's record again, and wrong besides: its refusal quotes no value either.
        bad = _line(work, "U9", work.make("U9", b))
        bad["record"]["device_type"] = b
        foreign += [_id(theirs), bad["record"]["envelope"]["record_id"]]
        b_secrets.extend(foreign[-2:])
        answer = await door.call(region, "POST", "/v1/records", tokens[role],
                                 data=_ndjson([_line(work, "U9", mine1), _line(work, "U9", theirs),
                                               _line(work, "U4", mine2), bad]),
                                 content_type=NDJSON)
        assert answer.status == 207, answer.text
        assert answer.body["refused"][0] == {"index": 1, "reason": "foreign_tenant", "message":
                                             answer.body["refused"][0]["message"]}
        assert [x["index"] for x in answer.body["refused"]] == [1, 3]
        assert [(x["index"], x["record_id"]) for x in answer.body["accepted"]] == \
            [(0, _id(mine1)), (2, _id(mine2))]
        assert not leaks(answer.text), role
        accepted_ids += [_id(mine1), _id(mine2)]

        mine3, theirs2 = work.make("U1", a), work.make("U1", b)
        foreign.append(_id(theirs2))
        b_secrets.append(_id(theirs2))
        answer = await door.call(region, "POST", "/v1/records", tokens[role], data=_framed([
            work.contract.codec.encode("U1", theirs2), work.contract.codec.encode("U1", mine3)]),
            content_type=AVRO_BATCH)
        assert answer.status == 207, answer.text
        assert [(x["index"], x["reason"]) for x in answer.body["refused"]] == \
            [(0, "foreign_tenant")]
        assert [x["record_id"] for x in answer.body["accepted"]] == [_id(mine3)]
        assert not leaks(answer.text), role
        accepted_ids.append(_id(mine3))
    # Only A's records were produced, on A's partition; none of B's is stored anywhere.
    grown = _grown(offsets, await _upload_offsets(work, region))
    assert sum(grown.values()) == len(accepted_ids) and len(grown) == 1, grown
    await wait_for(lambda: _has(work, region, accepted_ids), STORED_S, "A's uploads stored")
    await _settle(work, a, region)
    assert await _nowhere(work, foreign), "a record naming B was stored"
    assert await work.region_pool(region).fetchval(
        "SELECT count(*) FROM dead_letters WHERE record_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in foreign]) == 0

    # A's admin asks for deletion: A's data goes, B's rows stay as they were.
    async def b_rows() -> list[tuple]:
        return [tuple(r) for r in await work.region_pool(region).fetch(
            "SELECT record_id, category, body, deadline FROM records WHERE tenant_id = $1"
            " ORDER BY record_id", uuid.UUID(b))]
    b_before = await b_rows()
    assert len(b_before) == len(b_ids)
    erased = await door.call(region, "POST", "/v1/deletion-request", tokens["admin"])
    assert erased.status == 200, erased.text
    assert erased.body["status"] == "completed" and erased.body["tenant_id"] == a
    assert not leaks(erased.text)
    assert await work.directory_state(a) == "purged"
    assert not await work.region_pool(region).fetchval(
        "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(a))
    assert await b_rows() == b_before, "B's rows changed"
    assert await work.directory_state(b) == "active"
    assert await work.tenant_region(b) == region
    assert await work.region_pool(region).fetchval(
        "SELECT count(*) FROM deletion_audit WHERE tenant_id = $1", uuid.UUID(b)) == 0
    assert {r["record_id"] for r in await work.client(b, "connector").download(
        limit=LIMITS.download)} == set(b_relay_ids)


# ----------------------------------------------------------------------------- 2. tokens

async def test_every_bad_token_gets_401_with_its_reason_and_is_counted(work, door, stack, system):
    region = "na"
    tenant = await work.onboarded(region)
    s = stack
    now = int(time.time())
    other_key = ec.generate_private_key(ec.SECP256R1())
    # (what, Authorization header or None, the reason the gateway must give)
    cases = [
        ("no header", None, "missing"),
        ("a Basic scheme", "Basic " + base64.b64encode(b"user:pass").decode(), "malformed"),
        ("Bearer and nothing", "Bearer ", "malformed"),
        ("garbage", "Bearer not.a.jwt", "malformed"),
        ("expired", _signed(s, _claims(s, tenant, iat=now - 7200, nbf=now - 7200,
                                       exp=now - 3600)), "expired"),
        ("not yet valid", _signed(s, _claims(s, tenant, nbf=now + 3600)), "not_yet_valid"),
        ("wrong audience", _signed(s, _claims(s, tenant, aud="someone-else")), "wrong_audience"),
        ("wrong issuer", _signed(s, _claims(s, tenant, iss="https://evil.example/")),
         "wrong_issuer"),
        ("forged: same kid, another key", _signed(s, _claims(s, tenant), key=other_key),
         "bad_signature"),
        ("unknown kid", _signed(s, _claims(s, tenant), kid="not-the-issuers"), "unknown_key"),
        ("alg none", _unsigned(s, _claims(s, tenant)), "algorithm_not_allowed"),
        ("HS256 keyed with the public key", _hs256_with_public_key(s, _claims(s, tenant)),
         "algorithm_not_allowed"),
        ("no tid", _signed(s, _claims(s, tenant, tid=DROP)), "missing_claim"),
        ("no roles", _signed(s, _claims(s, tenant, roles=DROP)), "missing_claim"),
        ("an unknown role", _signed(s, _claims(s, tenant, roles=["superuser"])), "bad_claim"),
        ("a tid that is not a tenant id", _signed(s, _claims(s, tenant, tid="tenant-a")),
         "bad_claim"),
    ]
    # The forging helpers make tokens the gateway accepts when nothing is wrong with them.
    fine = await door.call(region, "GET", "/v1/status", _signed(s, _claims(s, tenant)))
    assert fine.status == 200 and fine.body["tenant_id"] == tenant, fine.text

    reasons = Counter(reason for _, _, reason in cases)
    before = {r: await metric(system.metrics_port, "mdmbus_gateway_tokens_refused_total",
                              reason=r) for r in reasons}
    for what, token, reason in cases:
        header = None if token is None else token if token.split(" ")[0] in (
            "Basic", "Bearer") else f"Bearer {token}"
        answer = await door.call(region, "GET", "/v1/status", authorization=header)
        assert answer.status == 401, (what, answer.status, answer.text)
        assert answer.body["error"] == "invalid_token", what
        assert answer.body["reason"] == reason, (what, answer.body)
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
        assert tenant not in answer.text, what

    # No token at all is refused on every route, before anything else is looked at.
    for method, path, route in ROUTES:
        answer = await door.call(region, method, _path(path))
        assert (answer.status, answer.body["error"], answer.body["reason"]) == \
            (401, "invalid_token", "missing"), route
    reasons["missing"] += len(ROUTES)

    for reason, n in reasons.items():
        got = await metric(system.metrics_port, "mdmbus_gateway_tokens_refused_total",
                           reason=reason)
        assert got - before[reason] == n, (reason, got - before[reason], n)


async def test_each_role_gets_403_on_every_route_it_may_not_call(work, door, stack):
    region = "ap"
    tenant = await work.onboarded(region)
    relay = await work.produce("R1", tenant)
    await wait_for(lambda: _has(work, region, [_id(relay)]), STORED_S, "the relay record stored")
    offsets = await _upload_offsets(work, region)
    sneaked = work.make("U9", tenant)
    bodies = {"upload": dict(data=_ndjson([_line(work, "U9", sneaked)]), content_type=NDJSON),
              "relay_ack": dict(json_body={"record_ids": [_id(relay)]})}
    forbidden = [(method, path, route, role) for method, path, route in ROUTES
                 for role in ROLES if role not in ALLOWED[route]]
    assert len(forbidden) == len(ROUTES) * len(ROLES) - sum(len(v) for v in ALLOWED.values())
    for method, path, route, role in forbidden:
        answer = await door.call(region, method, _path(path), work.token(tenant, role),
                                 **bodies.get(route, {}))
        assert (answer.status, answer.body["error"]) == (403, "forbidden"), (route, role,
                                                                              answer.text)
    # Nothing a refused call asked for happened.
    assert await _upload_offsets(work, region) == offsets, "a forbidden upload was produced"
    assert await work.stored(region, [_id(relay)]) == {_id(relay)}, "a forbidden ack deleted"
    assert await work.directory_state(tenant) == "active", "a forbidden deletion request ran"

    # The allowed pairs are not refused (deletion_request, which would purge, aside).
    harmless = {"upload": dict(data=b"", content_type=NDJSON),
                "relay_ack": dict(json_body={"record_ids": []})}
    for method, path, route in ROUTES:
        if route == "deletion_request":
            continue
        for role in sorted(ALLOWED[route]):
            answer = await door.call(region, method, _path(path), work.token(tenant, role),
                                     **harmless.get(route, {}))
            assert answer.status == (404 if route == "erasure_receipt" else 200), \
                (route, role, answer.status, answer.text)
    await _settle(work, tenant, region)
    assert await _nowhere(work, [_id(sneaked)])

    # A valid token of a tenant that was never onboarded.
    stranger = work.factory.uuid()
    answer = await door.call(region, "GET", "/v1/status", work.token(stranger, "admin"))
    assert (answer.status, answer.body["error"]) == (403, "tenant_not_onboarded")


async def test_a_tenant_of_another_region_is_sent_to_its_gateway(work, door, stack):
    home, elsewhere = "na", "eu"
    tenant = await work.onboarded(home)
    offsets = await _upload_offsets(work, elsewhere)
    record = work.make("U9", tenant)
    bodies = {"upload": dict(data=_ndjson([_line(work, "U9", record)]), content_type=NDJSON),
              "relay_ack": dict(json_body={"record_ids": [str(uuid.uuid4())]})}
    for method, path, route in ROUTES:
        role = sorted(ALLOWED[route])[0]
        answer = await door.call(elsewhere, method, _path(path), work.token(tenant, role),
                                 **bodies.get(route, {}))
        assert answer.status == 421, (route, answer.status, answer.text)
        assert answer.body["error"] == "wrong_region"
        assert answer.body["region"] == home
        assert answer.body["gateway"] == stack.gateway_url(home)
        assert home in answer.body["message"] and stack.gateway_url(home) in answer.body["message"]
    assert await _upload_offsets(work, elsewhere) == offsets, "produced in another region"
    assert await work.directory_state(tenant) == "active"
    assert await _nowhere(work, [_id(record)])
    # Its own region's gateway serves it.
    assert (await work.client(tenant, "auditor").status())["region"] == home


# ----------------------------------------------------------------------------- 3. bad input

async def test_bad_records_are_refused_one_by_one_and_their_neighbours_stored(work, door):
    region = "eu"
    tenant = await work.onboarded(region)
    token = work.token(tenant, "connector")
    good = [work.make(k, tenant) for k in ("U1", "U9", "U4", "U12")]
    huge = work.make("U9", tenant, device_name="x" * (MAX_RECORD_BYTES + 1024))
    relay = work.make("R1", tenant)
    lines = [_line(work, "U1", good[0]),
             b'{"kind": "U1", "record": {',                    # 1: not JSON
             {"kind": "U99", "record": _line(work, "U9", good[1])["record"]},  # 2: unknown kind
             _line(work, "U9", good[1]),
             _line(work, "U9", huge),                          # 4: oversized (> 512 KiB)
             _line(work, "U4", good[2]),
             {"kind": "U4"},                                   # 6: not kind + record
             _line(work, "R1", relay),                         # 7: not an upload kind
             _line(work, "U12", good[3])]
    offsets = await _upload_offsets(work, region)
    answer = await door.call(region, "POST", "/v1/records", token, data=_ndjson(lines),
                             content_type=NDJSON)
    assert answer.status == 207, answer.text
    assert [(r["index"], r["reason"]) for r in answer.body["refused"]] == [
        (1, "invalid_json"), (2, "unknown_kind"), (4, "oversized"), (6, "invalid_line"),
        (7, "wrong_topic")]
    assert [(a["index"], a["record_id"]) for a in answer.body["accepted"]] == [
        (0, _id(good[0])), (3, _id(good[1])), (5, _id(good[2])), (8, _id(good[3]))]
    assert sum(_grown(offsets, await _upload_offsets(work, region)).values()) == len(good)
    await wait_for(lambda: _has(work, region, [_id(r) for r in good]), STORED_S,
                   "the good neighbours stored")
    await _settle(work, tenant, region)
    assert await _nowhere(work, [_id(huge), _id(relay)])

    # An Avro batch of valid records: accepted and stored, bytes for bytes.
    batch = [work.make(k, tenant) for k in ("U2", "U7", "U14")]
    encoded = {_id(r): work.contract.codec.encode(r["envelope"]["kind"], r) for r in batch}
    client = work.client(tenant, "connector")
    result = await client.upload_avro(encoded.values())
    assert result["refused"] == []
    assert [a["record_id"] for a in result["accepted"]] == [_id(r) for r in batch]
    assert [a["kind"] for a in result["accepted"]] == ["U2", "U7", "U14"]
    await wait_for(lambda: _has(work, region, encoded), STORED_S, "the Avro batch stored")
    assert await work.bodies(region, encoded) == encoded


async def test_refused_requests_write_nothing(work, door):
    """413 (body, records), 415, 400 (Avro framing): the whole request is refused and none
    of its records reaches the topic or the store, however many valid ones it held."""
    region = "ap"
    tenant = await work.onboarded(region)
    token = work.token(tenant, "admin")
    offsets = await _upload_offsets(work, region)
    sent: list[str] = []

    def valid(n: int) -> list[dict]:
        records = [work.make("U9", tenant) for _ in range(n)]
        sent.extend(_id(r) for r in records)
        return records

    # A body over 8 MiB, declared (Content-Length) and streamed (chunked, no length).
    body = _ndjson([_line(work, "U9", r) for r in valid(3)]) + b" " * LIMITS.request_bytes + b"\n"
    answer = await door.call(region, "POST", "/v1/records", token, data=body, content_type=NDJSON)
    assert (answer.status, answer.body["error"]) == (413, "request_too_large"), answer.text

    async def chunks():
        yield _ndjson([_line(work, "U9", r) for r in valid(3)])
        for _ in range(LIMITS.request_bytes // (1 << 20) + 1):
            yield b" " * (1 << 20)
    answer = await door.call(region, "POST", "/v1/records", token, data=chunks(),
                             content_type=NDJSON)
    assert (answer.status, answer.body["error"]) == (413, "request_too_large"), answer.text

    # More records than an upload may hold.
    lines = [_line(work, "U9", r) for r in valid(5)] + [{}] * (LIMITS.records - 4)
    answer = await door.call(region, "POST", "/v1/records", token, data=_ndjson(lines),
                             content_type=NDJSON)
    assert (answer.status, answer.body["error"]) == (413, "too_many_records"), answer.text

    # Another content type.
    for content_type in ("application/json", "text/plain"):
        answer = await door.call(region, "POST", "/v1/records", token,
                                 data=_ndjson([_line(work, "U9", r) for r in valid(2)]),
                                 content_type=content_type)
        assert (answer.status, answer.body["error"]) == (415, "unsupported_media_type"), \
            answer.text

    # A malformed Avro batch: valid messages, then a frame cut short or a stray byte.
    for tail in (b"\x00\x00\x10\x00abc", b"\x00\x01"):
        messages = [work.contract.codec.encode("U9", r) for r in valid(2)]
        answer = await door.call(region, "POST", "/v1/records", token,
                                 data=_framed(messages) + tail, content_type=AVRO_BATCH)
        assert (answer.status, answer.body["error"]) == (400, "bad_framing"), answer.text

    assert await _upload_offsets(work, region) == offsets, "a refused request produced records"
    await _settle(work, tenant, region)
    assert await _nowhere(work, sent), "a record of a refused request was stored"
    assert not await work.region_pool(region).fetchval(
        "SELECT count(*) FROM dead_letters WHERE record_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in sent])


async def _raw_tls(settings: Settings, region: str, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(
        sock, ("127.0.0.1", settings.gateway_ports[region]))
    return await asyncio.open_connection(sock=sock, ssl=client_ssl_context(settings.ca_path),
                                         server_hostname="127.0.0.1")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


async def test_a_stalled_body_gets_408_and_others_are_served_meanwhile(work, stack):
    """A client that sends its headers and part of its body, then nothing: 408 once the
    gateway's body limit (MDMBUS_GATEWAY_BODY_TIMEOUT, lowered to BODY_TIMEOUT_S here) has
    passed, and none of its records written; other clients are served while it waits."""
    region = "na"
    tenant = await work.onboarded(region)
    token = work.token(tenant, "connector")
    offsets = await _upload_offsets(work, region)
    stalled = [work.make("U9", tenant) for _ in range(3)]
    body = _ndjson([_line(work, "U9", r) for r in stalled])
    reader, writer = await _raw_tls(stack, region)
    try:
        writer.write(
            f"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {NDJSON}\r\nContent-Length: {len(body) + 4096}\r\n\r\n".encode()
            + body)  # 4 KiB short of what it declared: the rest never comes
        await writer.drain()
        started = time.monotonic()
        answer = asyncio.ensure_future(asyncio.wait_for(_read_answer(reader),
                                                        BODY_TIMEOUT_S + 30))

        # Meanwhile the gateway serves other requests at once.
        for _ in range(3):
            status = await work.client(tenant, "auditor").status()
            assert status["tenant_id"] == tenant
        other = work.make("U9", tenant)
        result = await work.client(tenant, "connector").upload([_line(work, "U9", other)])
        assert [a["record_id"] for a in result["accepted"]] == [_id(other)]
        assert not answer.done(), "the stalled request was answered before its time"

        status, headers, raw = await answer
        elapsed = time.monotonic() - started
    finally:
        writer.transport.abort()
    assert status == 408, raw
    assert json.loads(raw)["error"] == "request_timeout"
    assert BODY_TIMEOUT_S - 1 <= elapsed <= BODY_TIMEOUT_S + 15, elapsed
    assert sum(_grown(offsets, await _upload_offsets(work, region)).values()) == 1, \
        "only the other client's record was produced"
    await _settle(work, tenant, region)
    assert await _nowhere(work, [_id(r) for r in stalled])


async def test_a_client_leaving_mid_export_is_counted_and_the_gateway_serves_on(
        work, door, stack, system):
    region = "ap"
    tenant = await work.onboarded(region)
    # A large export (about 12 MB of JSON lines): rows written straight into the store.
    now = work.clock.now_dt()
    rows = []
    for _ in range(40):
        record = work.make("U9", tenant, device_name="d" * 300_000)
        rows.append((uuid.UUID(_id(record)), uuid.UUID(tenant), "U9", "upload", None, None, now,
                     now, work.contract.codec.encode("U9", record)))
    await work.region_pool(region).copy_records_to_table(
        "records", records=rows, columns=["record_id", "tenant_id", "kind", "category",
                                          "device_id", "session_id", "event_time", "stored_at",
                                          "body"])
    try:
        await _leave_mid_export(work, stack, system, region, tenant, rows)
    finally:  # 12 MB a run: not left in the store
        await work.region_pool(region).execute("DELETE FROM records WHERE tenant_id = $1",
                                               uuid.UUID(tenant))


async def _leave_mid_export(work: Workload, stack: Settings, system: System, region: str,
                            tenant: str, rows: list[tuple]) -> None:
    token = work.token(tenant, "auditor")
    aborted = dict(region=region, route="export", status="aborted")
    before = await metric(system.metrics_port, "mdmbus_gateway_requests_total", **aborted)
    served = await metric(system.metrics_port, "mdmbus_gateway_requests_total", region=region,
                          route="export", status="200")
    outages = await metric(system.metrics_port, "mdmbus_gateway_requests_total", region=region,
                           route="export", status="503")

    # A small receive buffer, so that the export cannot all fit in the socket buffers.
    reader, writer = await _raw_tls(stack, region, rcvbuf=64 * 1024)
    try:
        writer.write(f"GET /v1/export HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        assert b" 200 " in await reader.readline()
        while await reader.readline() not in (b"\r\n", b""):
            pass
        first = await reader.readuntil(b'"kind"')  # the first line has begun
        assert first
    finally:
        writer.transport.abort()  # gone, without reading the rest

    async def counted() -> bool:
        return await metric(system.metrics_port, "mdmbus_gateway_requests_total",
                            **aborted) > before
    await wait_for(counted, 30, "the export counted as aborted")
    assert await metric(system.metrics_port, "mdmbus_gateway_requests_total",
                        **aborted) == before + 1
    assert await metric(system.metrics_port, "mdmbus_gateway_requests_total", region=region,
                        route="export", status="503") == outages, "counted as a store outage"
    system.procs.assert_alive()
    # The gateway serves on: the whole export, to the next client.
    ids = [line["record"]["envelope"]["record_id"]
           async for line in work.client(tenant, "auditor").export()]
    assert sorted(ids) == sorted(str(r[0]) for r in rows)
    assert await metric(system.metrics_port, "mdmbus_gateway_requests_total", region=region,
                        route="export", status="200") == served + 1
    assert (await work.client(tenant, "connector").status())["rows"] == {"upload": len(rows)}


# ----------------------------------------------------------------------------- 5. upload

async def test_accepted_uploads_are_in_kafka_before_the_answer_and_then_stored(work, stack):
    region = "na"
    tenant = await work.onboarded(region)
    records = [work.make(f"U{i}", tenant) for i in range(1, 15)]
    offsets = await _upload_offsets(work, region)
    elsewhere = {r: await _upload_offsets(work, r) for r in REGIONS if r != region}
    for role, part in (("connector", records[:10]), ("admin", records[10:])):
        result = await work.client(tenant, role).upload([_line(work, r["envelope"]["kind"], r)
                                                         for r in part])
        assert result["refused"] == []
        assert [(a["record_id"], a["kind"]) for a in result["accepted"]] == \
            [(_id(r), r["envelope"]["kind"]) for r in part]
    # Read at once after the answers: acks=all means the records are in the log already,
    # all on the tenant's partition of the region's upload topic.
    grown = _grown(offsets, await _upload_offsets(work, region))
    assert list(grown.values()) == [len(records)], grown
    for other in REGIONS:
        if other != region:
            assert await _upload_offsets(work, other) == elsewhere[other], other
    ids = [_id(r) for r in records]
    await wait_for(lambda: _has(work, region, ids), STORED_S, "every upload stored")
    where = await work.anywhere(ids)
    assert where == {r: (set(ids) if r == region else set()) for r in REGIONS}
    rows = await work.region_pool(region).fetch(
        "SELECT record_id, tenant_id, kind, category FROM records"
        " WHERE record_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    bodies = await work.bodies(region, ids)
    assert {str(r["record_id"]): (str(r["tenant_id"]), r["kind"], r["category"],
                                  bodies[str(r["record_id"])]) for r in rows} == {
        _id(r): (tenant, r["envelope"]["kind"], "upload",
                 work.contract.codec.encode(r["envelope"]["kind"], r)) for r in records}
