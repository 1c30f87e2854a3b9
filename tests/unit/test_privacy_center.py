"""The privacy center without a browser: one-time login links (mdmbus/stack/login_links.py)
are single use, short-lived and stored hashed; the files served are the ones the package ships;
a configured identity provider replaces the embedded one."""

from __future__ import annotations

import json
import uuid
from importlib.resources import files

import pytest

from mdmbus.services.gateway.privacy_center import STATIC, content_security_policy
from mdmbus.settings import Settings
from mdmbus.stack.login_links import LoginTickets


def test_a_ticket_works_once(tmp_path):
    tickets = LoginTickets(tmp_path)
    tenant = str(uuid.uuid4())
    ticket = tickets.create(tenant, "admin", "eu", 600)
    used = tickets.consume(ticket)
    assert (used.tenant, used.role, used.region, used.token_ttl_s) == (tenant, "admin", "eu", 600)
    assert tickets.consume(ticket) is None
    assert list(tmp_path.iterdir()) == []


def test_an_expired_or_unknown_ticket_is_refused(tmp_path):
    tickets = LoginTickets(tmp_path)
    stale = tickets.create(str(uuid.uuid4()), "auditor", "na", 600, valid_s=-1)
    assert tickets.consume(stale) is None
    assert tickets.consume("") is None and tickets.consume("x" * 500) is None
    assert tickets.consume(stale[:-1] + ("A" if stale[-1] != "A" else "B")) is None


def test_the_secret_is_not_stored(tmp_path):
    tickets = LoginTickets(tmp_path)
    ticket = tickets.create(str(uuid.uuid4()), "admin", "ap", 60)
    [path] = tmp_path.iterdir()
    assert ticket not in path.name and ticket not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    assert set(json.loads(path.read_text())) == {"tenant", "role", "region", "token_ttl_s",
                                                 "expires_at"}


def test_a_role_must_be_known(tmp_path):
    with pytest.raises(ValueError):
        LoginTickets(tmp_path).create(str(uuid.uuid4()), "root", "eu", 60)


def test_the_page_is_the_files_the_package_ships():
    shipped = {p.name for p in files("mdmbus.services.gateway").joinpath("privacy").iterdir()}
    assert shipped == set(STATIC)


def test_the_policy_allows_only_the_gateway_and_a_configured_token_endpoint():
    assert "connect-src 'self';" in content_security_policy(Settings())
    external = Settings(oidc_authorization_url="https://login.example.com/authorize",
                        oidc_token_url="https://login.example.com/token")
    assert "connect-src 'self' https://login.example.com;" in content_security_policy(external)


async def _serve(settings: Settings):
    from types import SimpleNamespace

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from mdmbus.services.gateway.privacy_center import add_routes
    app = web.Application()
    add_routes(app, SimpleNamespace(settings=settings, region="eu"))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_configured_identity_provider_replaces_the_embedded_one(tmp_path):
    settings = Settings(state_dir=tmp_path, oidc_authorization_url="https://idp.example/authorize",
                        oidc_token_url="https://idp.example/token", oidc_client_id="pc-123")
    client = await _serve(settings)
    try:
        response = await client.get("/privacy/config.json")
        assert await response.json() == {
            "client_id": "pc-123", "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "https://idp.example/token", "scope": "openid",
            "provider": "external"}
        assert "connect-src 'self' https://idp.example;" in \
            response.headers["Content-Security-Policy"]
        for path in ("/oidc/login?ticket=x", "/oidc/authorize", "/oidc/.well-known/openid-configuration"):
            assert (await client.get(path)).status == 404, path
    finally:
        await client.close()


async def test_without_one_the_gateway_is_the_provider(tmp_path):
    client = await _serve(Settings(state_dir=tmp_path))
    try:
        config = await (await client.get("/privacy/config.json")).json()
        base = Settings(state_dir=tmp_path).gateway_url("eu")
        assert (config["authorization_endpoint"], config["token_endpoint"],
                config["redirect_uri"]) == (f"{base}/oidc/authorize", f"{base}/oidc/token",
                                            f"{base}/privacy/")
        assert (await client.get("/oidc/.well-known/openid-configuration")).status == 200
        page = await client.get("/privacy/")
        assert page.headers["Cache-Control"] == "no-store"
        assert (await client.get("/privacy", allow_redirects=False)).headers["Location"] == \
            "/privacy/"
    finally:
        await client.close()
