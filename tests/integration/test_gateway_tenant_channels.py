"""The gateway takes the caller's tenant from the verified token and from nowhere else: tenant A's
token with tenant B's id offered on every other channel (query parameters, headers, body
fields, the path) gets A's data or a refusal, never B's, and changes nothing of B's."""

from __future__ import annotations

import json
import uuid

import aiohttp
import pytest

from mdmbus.tls import client_ssl_context
from tests.conftest import wait_for
from tests.integration.harness import Workload
from tests.integration.test_gateway import STORED_S, _has, _id, system  # noqa: F401 (fixture)

REGION = "eu"
NAMES = ("tenant_id", "tenant", "tid", "tenantId", "x-tenant-id")
HEADERS = ("X-Tenant-Id", "X-Mdmbus-Tenant", "Tenant", "X-Tenant", "X-Forwarded-Tenant",
           "X-Ms-Client-Tenant-Id")


@pytest.fixture
async def work(stack, system):  # noqa: F811
    async with Workload(stack, system.clock, seed=uuid.uuid4().int,
                        tokens_dir=system.log_dir / "tokens") as w:
        yield w
    system.procs.assert_alive()


def _channels(b: str) -> list[tuple[str, dict]]:
    """(name, request options) offering tenant ``b`` one way each, and all at once."""
    out = [(f"query {n}", {"params": {n: b}}) for n in NAMES]
    out += [(f"header {h}", {"headers": {h: b}}) for h in HEADERS]
    out += [(f"body {n}", {"body": {n: b}}) for n in NAMES]
    out.append(("everything", {"params": {n: b for n in NAMES},
                               "headers": {h: b for h in HEADERS},
                               "body": {n: b for n in NAMES}}))
    return out


async def test_the_tenant_comes_from_the_token_only(work, stack):
    a, b = await work.onboarded(REGION), await work.onboarded(REGION)
    a_dev, b_dev = work.factory.uuid(), work.factory.uuid()
    a_relay = [await work.produce("R3", a, device_id=a_dev)]
    b_relay = [await work.produce(k, b, device_id=b_dev) for k in ("R1", "R3")]
    a_up, b_up = [await work.produce("U9", a)], [await work.produce("U9", b)]
    a_ids, b_ids = {_id(r) for r in a_relay + a_up}, {_id(r) for r in b_relay + b_up}
    await wait_for(lambda: _has(work, REGION, a_ids | b_ids), STORED_S, "every record stored")
    b_relay_ids = [_id(r) for r in b_relay]
    secrets = [b, b_dev, *b_ids]
    pool = work.region_pool(REGION)

    async def b_rows() -> list[tuple]:
        return [tuple(r) for r in await pool.fetch(
            "SELECT record_id, category, body, deadline FROM records WHERE tenant_id = $1"
            " ORDER BY record_id", uuid.UUID(b))]
    b_before = await b_rows()
    base = work.settings.gateway_url(REGION)
    problems: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=client_ssl_context(work.settings.ca_path))) as http:
        async def call(method: str, path: str, role: str, opts: dict,
                       body: dict | None = None) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {work.token(a, role)}", **opts.get("headers", {})}
            payload = {**(body or {}), **opts.get("body", {})} if (body or "body" in opts) \
                else None
            async with http.request(method, base + path, params=opts.get("params"),
                                    headers=headers,
                                    data=None if payload is None else json.dumps(payload),
                                    ) as resp:
                return resp.status, await resp.text()

        for name, opts in _channels(b):
            answers = []
            status, text = await call("GET", "/v1/status", "auditor", opts)
            answers.append(text)
            if status != 200 or json.loads(text)["tenant_id"] != a:
                problems.append(f"status via {name}: {status} {text[:200]}")
            status, text = await call("GET", "/v1/export", "admin", opts)
            answers.append(text)
            got = {json.loads(x)["record"]["envelope"]["record_id"]
                   for x in text.splitlines() if x.strip()} if status == 200 else None
            if got != a_ids:
                problems.append(f"export via {name}: {status} {sorted(got or [])}")
            status, text = await call("GET", "/v1/relay", "connector", opts)
            answers.append(text)
            got = {r["record_id"] for r in json.loads(text)["records"]} if status == 200 else None
            if got != {_id(r) for r in a_relay}:
                problems.append(f"relay via {name}: {status} {got}")
            # Acknowledging B's relay ids: each refused as not A's (the answer names the ids
            # the caller sent, nothing else of B's).
            status, text = await call("POST", "/v1/relay/ack", "connector", opts,
                                      {"record_ids": b_relay_ids})
            answer = json.loads(text)
            if status != 200 or answer["deleted"] or {r["reason"] for r in answer["refused"]} \
                    != {"not_pending_for_tenant"}:
                problems.append(f"ack via {name}: {status} {text[:200]}")
            answers.append(text.replace(b_relay_ids[0], "").replace(b_relay_ids[1], ""))
            leaked = [s for s in secrets for t in answers if s in t]
            if leaked:
                problems.append(f"{name}: an answer named B's ids {sorted(set(leaked))}")

        # The path: routes with B's id in them do not exist; none answers with B's data.
        for path in (f"/v1/tenants/{b}/export", f"/v1/export/{b}", f"/v1/status/{b}",
                     f"/v1/{b}/relay", f"/v1/relay/{b}"):
            status, text = await call("GET", path, "admin", {})
            if status != 404 or any(s in text for s in secrets):
                problems.append(f"path {path}: {status} {text[:200]}")

        assert not problems, "\n".join(problems)
        # Deletion with B's id offered everywhere: A's data is erased, B's is untouched.
        status, text = await call("POST", "/v1/deletion-request", "admin", _channels(b)[-1][1])
        assert status == 200, text
        assert json.loads(text)["tenant_id"] == a
    assert await work.stored(REGION, b_relay_ids) == set(b_relay_ids), "B's relay rows deleted"
    assert await b_rows() == b_before, "B's rows changed"
    assert await work.directory_state(b) == "active" and await work.directory_state(a) == "purged"
    assert await pool.fetchval("SELECT count(*) FROM deletion_audit WHERE tenant_id = $1",
                               uuid.UUID(b)) == 0
