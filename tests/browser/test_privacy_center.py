"""The privacy center (services/gateway/privacy_center.py, docs/privacy-center.md) in a real
browser: Debian's Chromium through chromium-driver, against the real gateway and pipeline
processes of region eu on the test stack.

What the page shows is checked against the API it calls (GET /v1/holdings), and the API
against what the test itself stored (and the store, read directly). Sign-in goes through the
operator's one-time login link and the OIDC code flow with PKCE, as a tenant's administrator
would. With MDMBUS_SCREENSHOTS set (``./run screenshots``) the tests also write the README's
screenshots there."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.webdriver.common.keys import Keys

from mdmbus.cli.launcher import Launcher
from mdmbus.cli.login_link import make_login_link
from mdmbus.tls import client_ssl_context
from mdmbus.settings import Settings
from mdmbus.stack.login_links import LoginTickets
from tests.browser.browser import Browser, By
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher

pytestmark = pytest.mark.integration

REGION = "eu"
SHOTS = Path(os.environ["MDMBUS_SCREENSHOTS"]) if os.environ.get("MDMBUS_SCREENSHOTS") else None
CATEGORIES = {"uploads": "kind", "relay_pending": "kind", "inventory_cache": "kind",
              "device_commands": "kind", "dead_letters": "reason"}


# ----------------------------------------------------------------------------- the system

@dataclass
class Tenant:
    id: str
    #: kind -> how many records of it the test stored, by category of the holdings answer.
    stored: dict[str, dict[str, int]] = field(default_factory=dict)
    record_ids: list[str] = field(default_factory=list)
    session_expires: dt.datetime | None = None


class Api:
    """Raw HTTPS calls to the eu gateway (status, headers, bytes)."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.gateway_url(REGION)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl_context(settings.ca_path)),
            timeout=aiohttp.ClientTimeout(total=60))

    async def call(self, method: str, path: str, token: str | None = None,
                   **kw: Any) -> tuple[int, Any, bytes]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, headers=headers,
                                        allow_redirects=False, **kw) as r:
            return r.status, r.headers, await r.read()

    async def json(self, path: str, token: str) -> Any:
        status, _, body = await self.call("GET", path, token)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture(scope="module")
async def procs(stack, tmp_path_factory):
    procs: Launcher = launcher(stack, tmp_path_factory.mktemp("privacy"), speed=1.0)
    try:
        procs.start("pipeline", REGION)
        procs.start("gateway", REGION)
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as w:
            probe = await w.onboard(REGION)

            async def up() -> bool:
                procs.assert_alive()
                return await w.tenant_region(probe) == REGION
            await wait_for(up, 120, "the pipeline applying an onboarding", interval_s=0.2)
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="module")
async def work(stack, procs):
    async with Workload(stack, procs.clock, seed=uuid.uuid4().int,
                        tokens_dir=procs.log_dir / "tokens") as w:
        yield w


@pytest.fixture(scope="module")
async def api(stack):
    a = Api(stack)
    yield a
    await a.session.close()


async def _stored(work: Workload, tenant: Tenant, letters: int = 0) -> None:
    ids = [uuid.UUID(i) for i in tenant.record_ids]
    pool = work.region_pool(REGION)

    async def all_there() -> bool:
        held = await pool.fetchval("SELECT count(*) FROM records WHERE record_id = ANY($1::uuid[])"
                                   " AND body IS NOT NULL", ids)
        refused = await pool.fetchval("SELECT count(*) FROM dead_letters WHERE tenant_id = $1",
                                      uuid.UUID(tenant.id))
        return held == len(ids) and refused == letters
    await wait_for(all_there, 90, "the tenant's records stored")


async def _produce(work: Workload, tenant: Tenant, category: str, kind: str, n: int,
                   **kw: Any) -> list[str]:
    ids = [(await work.produce(kind, tenant.id, **kw))["envelope"]["record_id"] for _ in range(n)]
    tenant.stored.setdefault(category, {})[kind] = tenant.stored.get(category, {}).get(kind, 0) + n
    tenant.record_ids += ids
    return ids


@pytest.fixture(scope="module")
async def first(work) -> Tenant:
    """A tenant holding some of every category, one relay record acknowledged by CM."""
    t = Tenant(await work.onboarded(REGION, timeout_s=90))
    await _produce(work, t, "uploads", "U1", 3)
    await _produce(work, t, "uploads", "U9", 2)
    relay = await _produce(work, t, "relay_pending", "R1", 3)
    await _produce(work, t, "inventory_cache", "inventory_cache", 1, device_id=work.factory.uuid())
    device, session = work.factory.uuid(), work.factory.uuid()
    expires_ms = work.clock.now_ms() + 3_600_000
    t.session_expires = dt.datetime.fromtimestamp(expires_ms / 1000, dt.timezone.utc)
    await work.produce("device_session", t.id, device_id=device, session_id=session,
                       event_type="START", expires_at=expires_ms)
    await wait_for(lambda: work.region_pool(REGION).fetchval(
        "SELECT count(*) FROM device_sessions WHERE device_id = $1", uuid.UUID(device)), 60,
        "the session opened")
    await _produce(work, t, "device_commands", "device_command", 2, device_id=device,
                   session_id=session)
    for _ in range(2):  # refused: an e-mail address without an e-mail profile
        await work.send("U7", work.make("U7", t.id, email="someone@contoso.com",
                                        email_profile_deployed=False))
    await _stored(work, t, letters=2)
    connector = work.client(t.id, "connector")
    assert (await connector.ack([relay[0]]))["deleted"] == [relay[0]]
    t.stored["relay_pending"]["R1"] -= 1
    t.record_ids.remove(relay[0])
    return t


@pytest.fixture(scope="module")
async def second(work) -> Tenant:
    t = Tenant(await work.onboarded(REGION, timeout_s=90))
    await _produce(work, t, "uploads", "U2", 1)
    await _stored(work, t)
    return t


@pytest.fixture(scope="module")
def browser(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    b = Browser(stack.pki_dir / "gateway.crt", root / "downloads", root / "profile")
    yield b
    b.close()


def _link(stack: Settings, tenant: Tenant, role: str, session_ttl_s: float = 900) -> str:
    return make_login_link(stack, tenant.id, role, REGION, session_ttl_s)


def _sign_in(browser: Browser, link: str) -> None:
    browser.get(link)
    browser.signed_in()


def _shot(browser: Browser, name: str, element_id: str | None = None) -> None:
    if SHOTS is not None:
        browser.screenshot(SHOTS / name, element_id)


def _axe_js() -> str:
    """axe-core as ./run installs it (pinned, in .cache/npm)."""
    path = os.environ.get("MDMBUS_AXE_JS") or \
        Path(__file__).resolve().parents[2] / ".cache/npm/node_modules/axe-core/axe.min.js"
    return Path(path).read_text(encoding="utf-8")


def _utc(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).astimezone(dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def _expected(h: dict) -> dict[str, str]:
    """data-key -> data-value of every value the page must show for a holdings answer."""
    out = {f"tenant.{k}": h[k] for k in ("tenant_id", "region", "gateway")}
    for k, v in h["lifecycle"].items():
        out[f"tenant.{k}"] = v or ""
    for category, by in CATEGORIES.items():
        items = h["held"][category]
        if not items:
            out[f"held.{category}.total"] = "0"
        for item in items:
            base = f"held.{category}.{item[by]}"
            out.update({f"{base}.{by}": item[by], f"{base}.count": str(item["count"]),
                        f"{base}.oldest": item["oldest"] or "",
                        f"{base}.next_deadline": item["next_deadline"] or "",
                        f"{base}.rule": item["rule"] or ""})
    cm = h["cm_downloads"]
    out["cm.pending"] = str(cm["pending"])
    out["cm.last_acknowledged_at"] = cm["last_acknowledged_at"] or ""
    return out


# ----------------------------------------------------------------------------- the API

async def test_holdings_answer_what_was_stored(stack, work, api, first):
    h = await api.json("/v1/holdings", work.token(first.id, "admin"))
    assert (h["tenant_id"], h["region"], h["lifecycle"]["state"]) == (first.id, REGION, "active")
    counts = {c: {i[by]: i["count"] for i in h["held"][c]} for c, by in CATEGORIES.items()}
    assert counts == {"uploads": first.stored["uploads"],
                      "relay_pending": first.stored["relay_pending"],
                      "inventory_cache": first.stored["inventory_cache"],
                      "device_commands": first.stored["device_commands"],
                      "dead_letters": {"email_without_profile": 2}}
    rules = {c: {i["rule"] for i in h["held"][c]} for c in CATEGORIES}
    assert rules == {"uploads": {"retention_purge"}, "relay_pending": {"delete_after_download"},
                     "inventory_cache": {"inventory_cache_removal"},
                     "device_commands": {"session_expiry"}, "dead_letters": {"dead_letter_expiry"}}
    [commands] = h["held"]["device_commands"]
    assert dt.datetime.fromisoformat(commands["next_deadline"]) == first.session_expires
    pool = work.region_pool(REGION)
    [letters] = h["held"]["dead_letters"]
    assert dt.datetime.fromisoformat(letters["next_deadline"]) == await pool.fetchval(
        "SELECT min(deadline) FROM dead_letters WHERE tenant_id = $1", uuid.UUID(first.id))
    assert letters["bodies_kept"] == 2 and set(letters) == {
        "reason", "count", "oldest", "next_deadline", "rule", "bodies_kept"}, "no body, no error"
    cm = h["cm_downloads"]
    assert cm["pending"] == 2 and cm["oldest_pending_age_s"] > 0
    assert dt.datetime.fromisoformat(cm["last_acknowledged_at"]) == await pool.fetchval(
        "SELECT max(deleted_at) FROM deletion_audit WHERE tenant_id = $1"
        " AND rule = 'delete_after_download'", uuid.UUID(first.id))
    assert h["caller"] == {"role": "admin", "routes": [
        "deletion_request", "erasure_receipt", "erasure_receipts", "export", "holdings",
        "status", "upload"]}
    assert (await api.json("/v1/erasure-receipts", work.token(first.id, "auditor"))) == \
        {"receipts": []}


async def test_holdings_refuse_connectors_strangers_and_no_token(work, api, first, second):
    for path in ("/v1/holdings", "/v1/erasure-receipts"):
        status, _, body = await api.call("GET", path, work.token(first.id, "connector"))
        assert status == 403 and json.loads(body)["error"] == "forbidden"
        status, _, _ = await api.call("GET", path)
        assert status == 401
        # The second tenant's token (stolen or not) answers for the second tenant only.
        status, _, body = await api.call("GET", path, work.token(second.id, "admin"))
        assert status == 200 and first.id.encode() not in body
        assert not any(i.encode() in body for i in first.record_ids)


# ----------------------------------------------------------------------------- sign-in

async def test_a_login_link_signs_in_once(stack, work, api, first, browser):
    out = subprocess.run([sys.executable, "-m", "mdmbus", "token", "--tenant", first.id,
                          "--role", "admin", "--login-link"], capture_output=True, text=True,
                         timeout=60, check=True)
    link = out.stdout.strip()
    assert link.startswith(stack.gateway_url(REGION) + "/oidc/login?ticket=")
    _sign_in(browser, link)
    assert browser.driver.current_url == stack.gateway_url(REGION) + "/privacy/"
    browser.get(link)  # the same link again: refused, and not signed in
    browser.wait("return document.title.includes('not valid')", 10, "the refusal page")
    assert "used already or has expired" in browser.text()
    status, _, body = await api.call("GET", urllib.parse.urlsplit(link).path + "?"
                                     + urllib.parse.urlsplit(link).query)
    assert status == 400 and b"used already" in body

    tickets = LoginTickets(stack.issuer_dir / "login-links")
    stale = tickets.create(first.id, "admin", REGION, 900, valid_s=-1)
    status, _, _ = await api.call("GET", f"/oidc/login?ticket={stale}")
    assert status == 400, "an expired link is refused"
    elsewhere = tickets.create(first.id, "admin", "na", 900)
    status, _, body = await api.call("GET", f"/oidc/login?ticket={elsewhere}")
    assert status == 421 and b"region na" in body
    assert tickets.peek(elsewhere) is not None, "another region's link is not used up here"


async def _session_cookie(api: Api, stack: Settings, tenant: Tenant) -> str:
    ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(_link(stack, tenant, "admin")).query)
    status, headers, _ = await api.call("GET", f"/oidc/login?ticket={ticket['ticket'][0]}")
    assert status == 303 and headers["Location"] == "/privacy/#signin"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";")[0]


async def test_the_code_flow_needs_pkce_and_each_step_works_once(stack, api, first):
    redirect = stack.gateway_url(REGION) + "/privacy/"
    verifier = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": "mdmbus-privacy-center",
             "redirect_uri": redirect, "state": "s1", "code_challenge": challenge,
             "code_challenge_method": "S256"}

    def authorize(cookie: str | None, **change: str):
        q = urllib.parse.urlencode({**query, **change})
        return api.call("GET", f"/oidc/authorize?{q}", headers={"Cookie": cookie} if cookie else {})

    assert (await authorize(None))[0] == 401, "no sign-in session: the provider's login page"
    cookie = await _session_cookie(api, stack, first)
    assert (await authorize(cookie, redirect_uri="https://evil.example/privacy/"))[0] == 400
    status, headers, _ = await authorize(cookie, code_challenge_method="plain")
    assert status == 302 and "error=invalid_request" in headers["Location"]
    status, headers, _ = await authorize(cookie)
    assert status == 302 and headers["Location"].startswith(redirect + "?")
    answer = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["Location"]).query)
    assert answer["state"] == ["s1"]
    assert (await authorize(cookie))[0] == 401, "a sign-in session authorizes once"

    def exchange(code: str, code_verifier: str):
        return api.call("POST", "/oidc/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": "mdmbus-privacy-center", "code_verifier": code_verifier})

    status, _, body = await exchange(answer["code"][0], verifier[:-1] + "x")
    assert status == 400 and json.loads(body)["error"] == "invalid_grant"
    status, _, _ = await exchange(answer["code"][0], verifier)
    assert status == 400, "a code tried with a wrong verifier is used up"

    cookie = await _session_cookie(api, stack, first)
    _, headers, _ = await authorize(cookie)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["Location"]).query)["code"][0]
    status, headers, body = await exchange(code, verifier)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    token = json.loads(body)["access_token"]
    assert (await api.json("/v1/holdings", token))["tenant_id"] == first.id
    assert (await exchange(code, verifier))[0] == 400, "a code is exchanged once"


# ----------------------------------------------------------------------------- the page

async def test_the_page_shows_every_number_the_api_answers(stack, work, api, first, browser):
    _sign_in(browser, _link(stack, first, "admin"))
    before = dt.datetime.now(dt.timezone.utc)
    h = await api.json("/v1/holdings", work.token(first.id, "admin"))
    shown = browser.shown_values()
    after = dt.datetime.now(dt.timezone.utc)
    age_value, age_text = shown.pop("cm.oldest_pending_age_s")
    assert abs(float(age_value) - h["cm_downloads"]["oldest_pending_age_s"]) <= \
        (after - before).total_seconds() + 60, "the oldest pending age, as of the page's load"
    assert age_text.strip()
    expected = _expected(h)
    assert {k: v for k, (v, _) in shown.items()} == expected
    for key, (value, text) in shown.items():  # what a person reads is the same value
        if key.endswith(("_at", ".oldest", ".next_deadline")) and value:
            assert text == _utc(value), key
        elif key.endswith((".count", ".total", "cm.pending")):
            assert text == value, key
    assert browser.visible("export") and browser.visible("delete")
    assert "Active" in browser.text()
    # No third-party request: every resource the page loaded came from the gateway.
    origins = browser.js("return performance.getEntriesByType('resource')"
                         ".map(e => new URL(e.name).origin);")
    assert set(origins) <= {stack.gateway_url(REGION)}
    _shot(browser, "privacy-center-overview.png")
    _shot(browser, "privacy-center-holdings.png", "holdings")


async def test_an_ended_subscription_is_drawn_as_its_90_and_30_days(stack, work, api, browser):
    t = Tenant(await work.onboarded(REGION, timeout_s=90))
    await _produce(work, t, "uploads", "U4", 2)
    await _stored(work, t)
    await work.produce("tenant_subscription_ended", t.id)
    token = work.token(t.id, "auditor")

    async def in_retention() -> dict | None:
        h = await api.json("/v1/holdings", token)
        return h if h["lifecycle"]["state"] == "retention" else None
    h = await wait_for(in_retention, 60, "the tenant in retention")
    life = h["lifecycle"]
    ended, ro, purge = (dt.datetime.fromisoformat(life[k]) for k in
                        ("subscription_ended_at", "read_only_until", "purge_at"))
    assert (ro - ended, purge - ro) == (dt.timedelta(days=90), dt.timedelta(days=30))
    [uploads] = h["held"]["uploads"]
    assert (uploads["next_deadline"], uploads["rule"]) == (life["purge_at"], "retention_purge")
    _sign_in(browser, _link(stack, t, "auditor"))
    assert {k: v for k, (v, _) in browser.shown_values().items()
            if k != "cm.oldest_pending_age_s"} == _expected(h)
    assert browser.visible("timeline")
    label = browser.js("return document.getElementById('timeline-track').getAttribute('aria-label')")
    assert _utc(life["read_only_until"]) in label and _utc(life["purge_at"]) in label
    widths = browser.js("return [...document.querySelectorAll('#timeline-track .seg')]"
                        ".map(e => e.getBoundingClientRect().width);")
    assert widths[0] == pytest.approx(3 * widths[1], rel=0.02), "90 days against 30"
    _shot(browser, "privacy-center-timeline.png", "tenant")


async def test_the_export_is_the_apis_export(stack, work, api, first, browser):
    _sign_in(browser, _link(stack, first, "admin"))
    browser.driver.find_element(By.ID, "export-button").click()
    got = browser.downloaded(f"mdmbus-export-{first.id}.ndjson")
    status, _, body = await api.call("GET", "/v1/export", work.token(first.id, "admin"))
    assert status == 200 and got == body
    assert len(got.splitlines()) == len(first.record_ids)
    browser.wait("return document.getElementById('export-progress').value"
                 " === document.getElementById('export-progress').max", 10, "the progress full")


async def test_signing_out_forgets_and_a_second_tenant_sees_only_its_own(stack, first, second,
                                                                          browser):
    _sign_in(browser, _link(stack, first, "admin"))
    browser.driver.find_element(By.ID, "signout").click()
    browser.wait("return !document.getElementById('signin').hidden", 10, "the sign-in view")
    assert "You are signed out" in browser.text()
    assert first.id not in browser.driver.page_source
    browser.driver.back()
    browser.wait("return !document.getElementById('signin').hidden", 10, "no page from cache")
    assert first.id not in browser.driver.page_source
    _sign_in(browser, _link(stack, second, "admin"))
    shown = browser.shown_values()
    assert shown["tenant.tenant_id"][0] == second.id
    assert {k.split(".")[2] for k in shown if k.startswith("held.uploads.")} == {"U2"}
    source = browser.driver.page_source
    assert first.id not in source and not any(i in source for i in first.record_ids)


async def test_an_auditor_sees_no_export_or_deletion_and_a_connector_is_refused(
        stack, work, api, first, browser):
    _sign_in(browser, _link(stack, first, "auditor"))
    h = await api.json("/v1/holdings", work.token(first.id, "auditor"))
    assert {k: v for k, (v, _) in browser.shown_values().items()
            if k != "cm.oldest_pending_age_s"} == _expected(h)
    assert not browser.visible("export") and not browser.visible("delete")
    assert not browser.js("return document.getElementById('export-button').getClientRects().length"
                          " || document.getElementById('delete-button').getClientRects().length")
    browser.get(_link(stack, first, "connector"))
    browser.wait("return document.getElementById('signin-message').textContent", 20,
                 "the refusal")
    message = browser.js("return document.getElementById('signin-message').textContent")
    assert "administrators and auditors" in message and "connector" in message
    assert not browser.visible("center")


async def test_an_expired_session_goes_back_to_sign_in(stack, first, browser):
    # Long enough to see the page signed in first, on a slow machine too.
    _sign_in(browser, _link(stack, first, "admin", session_ttl_s=8))
    browser.wait("return !document.getElementById('signin').hidden", 20, "the sign-in view")
    assert "expired" in browser.text() and first.id not in browser.driver.page_source


async def test_axe_finds_no_serious_violation(stack, first, browser):
    axe_js = _axe_js()
    _sign_in(browser, _link(stack, first, "admin"))
    assert browser.axe(axe_js) == []
    browser.driver.find_element(By.ID, "signout").click()
    browser.wait("return !document.getElementById('signin').hidden", 10, "the sign-in view")
    assert browser.axe(axe_js) == []


async def test_every_answer_is_safe_in_a_browser(stack, work, api, first):
    token = work.token(first.id, "admin")
    for path, who in (("/privacy/", None), ("/privacy/app.js", None),
                      ("/privacy/config.json", None), ("/v1/holdings", token),
                      ("/v1/erasure-receipts", token), ("/v1/status", token),
                      ("/v1/export", token), ("/privacy/nothing-here", None),
                      ("/oidc/login?ticket=nothing", None), ("/v1/holdings", None)):
        _, headers, _ = await api.call("GET", path, who)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert headers["Cache-Control"] == "no-store", path
    root = Path(__file__).resolve().parents[2] / "services" / "gateway" / "privacy"
    html = (root / "index.html").read_text(encoding="utf-8")
    assert all('src="/privacy/' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"<script[^>]*>\s*[^<\s]", html), "no inline script"
    assert not re.search(r"\son\w+=|\sstyle=", html), "no inline handler or style"
    for f in root.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", "")), \
            f"{f.name} names no external asset"
        assert "localStorage" not in text and "document.cookie" not in text, f.name


async def test_deletion_behind_a_typed_confirmation_gives_the_receipt(stack, work, api, browser):
    t = Tenant(await work.onboarded(REGION, timeout_s=90))
    await _produce(work, t, "uploads", "U1", 2)
    await _produce(work, t, "uploads", "U5", 1)
    await _stored(work, t)
    _sign_in(browser, _link(stack, t, "admin"))
    box = browser.driver.find_element(By.ID, "delete-confirm")
    button = browser.driver.find_element(By.ID, "delete-button")
    box.send_keys(t.id[:-1])
    assert not button.is_enabled(), "enabled only by the exact tenant id"
    box.send_keys(t.id[-1])
    assert button.is_enabled()
    box.send_keys(Keys.ENTER)  # from the keyboard
    browser.wait("return !document.getElementById('receipt').hidden && document.querySelector("
                 "'[data-key=\"tenant.state\"]').dataset.value === 'purged'"
                 " && !document.getElementById('center').hasAttribute('aria-busy')", 90,
                 "the receipt, and the page shown again with the tenant purged")
    shown = browser.shown_values()
    assert shown["receipt.status"][0] == "completed"
    assert shown["receipt.deleted.upload"][0] == "3"
    receipt_id = shown["receipt.receipt_id"][0]
    ids = browser.js("return [...document.querySelectorAll('#receipt-ids li')]"
                     ".map(e => e.textContent);")
    assert sorted(ids) == sorted([f"upload: {i}" for i in t.record_ids] + [f"tenant: {t.id}"])
    token = work.token(t.id, "admin")
    receipt = await api.json(f"/v1/erasure-receipts/{receipt_id}", token)
    browser.driver.find_element(By.ID, "receipt-download").click()
    assert json.loads(browser.downloaded(f"erasure-receipt-{receipt_id}.json")) == receipt
    assert receipt["deleted"] == {"upload": 3, "tenant": 1}
    # The gateway answers "purged" afterwards, and the page says so.
    assert (await api.json("/v1/status", token))["state"] == "purged"
    assert (await api.call("GET", "/v1/export", token))[0] == 410
    assert shown["tenant.state"][0] == "purged"
    assert not browser.visible("export") and not browser.visible("delete")
    assert browser.js("return [...document.querySelectorAll('#receipts-list li')]"
                      ".map(e => e.dataset.receipt);") == [receipt_id]
    assert browser.axe(_axe_js()) == []
    _shot(browser, "privacy-center-receipt.png", "receipt")
