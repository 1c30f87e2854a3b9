"""The embedded stack's OpenID Connect provider, served by each gateway under ``/oidc/``: the
authorization code flow with PKCE (RFC 7636, S256 only) for one public client, the privacy
center page.

A real identity provider replaces all of this by configuration (MDMBUS_OIDC_AUTHORIZATION_URL,
MDMBUS_OIDC_TOKEN_URL, MDMBUS_OIDC_CLIENT_ID and MDMBUS_JWKS): the page only follows the
endpoints it is given, and the gateway only verifies tokens against the key set. What stands
in for the IdP's login page is the operator's one-time login link (mdmbus/stack/login_links.py):
opening it starts a sign-in session (a cookie scoped to /oidc/, valid minutes, good for one
authorization), which the authorization endpoint turns into a one-time code bound to the
page's PKCE challenge; the token endpoint exchanges code and verifier for an access token
signed by the stack's issuer. Sessions and codes are single-use and held in memory."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mdmbus.settings import Settings
from mdmbus.stack.login_links import LoginTicket, LoginTickets
from mdmbus.stack.token_issuer import TokenIssuer

__all__ = ["EmbeddedProvider", "CLIENT_ID", "SESSION_COOKIE"]

#: The privacy center's client id (a public client: no secret).
CLIENT_ID = "mdmbus-privacy-center"
SESSION_COOKIE = "mdmbus_signin"
#: Seconds a sign-in session waits for its authorization request, a code for its exchange.
SESSION_S, CODE_S = 300.0, 60.0
#: How many sessions and codes may wait at once (older ones are dropped).
PENDING_MAX = 10_000


@dataclass(frozen=True)
class _Grant:
    ticket: LoginTicket
    expires_at: float
    challenge: str = ""
    redirect_uri: str = ""


def _page(status: int, title: str, text: str) -> web.Response:
    """A plain page of the provider (no script, no external asset)."""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            '</title><link rel="stylesheet" href="/privacy/style.css"></head><body><main>'
            f'<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>'
            '<p><a href="/privacy/">Back to the privacy center</a></p></main></body></html>')
    return web.Response(status=status, text=body, content_type="text/html")


def _redirect(location: str, status: int = 302) -> web.Response:
    """A redirect returned, not raised (the gateway's error middleware answers raised HTTP
    exceptions as JSON errors)."""
    return web.Response(status=status, headers={"Location": location})


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description},
                             status=status)


class EmbeddedProvider:
    """The provider of one region's gateway."""

    def __init__(self, settings: Settings, region: str) -> None:
        self.settings = settings
        self.region = region
        self.tickets = LoginTickets(settings.issuer_dir / "login-links")
        self.issuer = TokenIssuer(settings.issuer_dir, settings.token_issuer,
                                  settings.token_audience)
        self.redirect_uri = settings.gateway_url(region) + "/privacy/"
        self._sessions: dict[str, _Grant] = {}
        self._codes: dict[str, _Grant] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/oidc/login", self.login)
        app.router.add_get("/oidc/authorize", self.authorize)
        app.router.add_post("/oidc/token", self.token)
        app.router.add_get("/oidc/.well-known/openid-configuration", self.discovery)

    def client_config(self) -> dict[str, Any]:
        base = self.settings.gateway_url(self.region)
        return {"client_id": CLIENT_ID, "authorization_endpoint": f"{base}/oidc/authorize",
                "token_endpoint": f"{base}/oidc/token", "redirect_uri": self.redirect_uri,
                "scope": "openid", "provider": "embedded"}

    @staticmethod
    def _put(table: dict[str, _Grant], grant: _Grant) -> str:
        now = time.time()
        for key in [k for k, g in table.items() if g.expires_at <= now]:
            del table[key]
        while len(table) >= PENDING_MAX:
            del table[next(iter(table))]
        key = secrets.token_urlsafe(32)
        table[key] = grant
        return key

    @staticmethod
    def _take(table: dict[str, _Grant], key: str | None) -> _Grant | None:
        grant = table.pop(key, None) if key else None
        return grant if grant is not None and grant.expires_at > time.time() else None

    # ------------------------------------------------------------------ endpoints

    async def discovery(self, request: web.Request) -> web.Response:
        config = self.client_config()
        return web.json_response({
            "issuer": self.settings.token_issuer,
            "authorization_endpoint": config["authorization_endpoint"],
            "token_endpoint": config["token_endpoint"],
            "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"]})

    async def login(self, request: web.Request) -> web.Response:
        """The one-time link: starts a sign-in session, then sends the browser to the page,
        which starts the authorization request."""
        ticket_text = request.query.get("ticket", "")
        ticket = self.tickets.peek(ticket_text)
        if ticket is not None and ticket.region != self.region:
            return _page(421, "Wrong region", "This sign-in link is for the gateway of region "
                         f"{ticket.region}: {self.settings.gateway_url(ticket.region)}/privacy/")
        ticket = self.tickets.consume(ticket_text)
        if ticket is None:
            return _page(400, "Sign-in link not valid", "This sign-in link has been used "
                         "already or has expired. Ask your operator for a new one.")
        session = self._put(self._sessions, _Grant(ticket, time.time() + SESSION_S))
        response = _redirect("/privacy/#signin", 303)
        response.set_cookie(SESSION_COOKIE, session, max_age=int(SESSION_S), path="/oidc/",
                            secure=True, httponly=True, samesite="Strict")
        return response

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID:
            return _page(400, "Unknown client", "The sign-in request names an unknown client.")
        if q.get("redirect_uri") != self.redirect_uri:
            return _page(400, "Unknown redirect", "The sign-in request's redirect_uri is not "
                         "the privacy center's address.")

        def back(**params: str) -> web.Response:
            if "state" in q:
                params["state"] = q["state"]
            return _redirect(self.redirect_uri + "?" + urllib.parse.urlencode(params))

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        challenge = q.get("code_challenge", "")
        if q.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request",
                        error_description="PKCE with code_challenge_method S256 is required")
        session = self._take(self._sessions, request.cookies.get(SESSION_COOKIE))
        if session is None:
            response = _page(401, "Sign-in needed", "Open the one-time sign-in link your "
                             "operator gives you (mdmbus token --tenant ID --role admin "
                             "--login-link).")
            response.del_cookie(SESSION_COOKIE, path="/oidc/")
            return response
        code = self._put(self._codes, _Grant(session.ticket, time.time() + CODE_S, challenge,
                                             self.redirect_uri))
        params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        response = _redirect(self.redirect_uri + "?" + urllib.parse.urlencode(params))
        response.del_cookie(SESSION_COOKIE, path="/oidc/")
        return response

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        if form.get("client_id") != CLIENT_ID:
            return _oauth_error("invalid_client", "unknown client", 401)
        grant = self._take(self._codes, str(form.get("code", "")))
        verifier = str(form.get("code_verifier", ""))
        if grant is None:
            return _oauth_error("invalid_grant", "the code is unknown, used or expired")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization's")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(digest.decode(),
                                                                        grant.challenge):
            return _oauth_error("invalid_grant", "the code_verifier does not match the challenge")
        t = grant.ticket
        token = self.issuer.issue(t.tenant, t.role, t.token_ttl_s)
        return web.json_response({"access_token": token, "token_type": "Bearer",
                                  "expires_in": int(t.token_ttl_s), "scope": "openid"})
