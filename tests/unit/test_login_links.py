"""One-time login links (mdmbus/stack/login_links.py): single use, short-lived, stored hashed;
and the privacy center's file list (what the gateway serves is what the package ships)."""

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
