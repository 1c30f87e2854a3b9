"""The privacy center page at ``/privacy/`` of each regional gateway: its static files
(package data in ``privacy/``, plain HTML, CSS and JavaScript modules, nothing external), its
sign-in configuration, and the response headers that keep every answer of the gateway safe in
a browser.

Every answer carries a Content-Security-Policy of ``default-src 'self'`` (no inline script or
style, no third-party request; the token endpoint of a configured identity provider is the one
other origin the page may call), ``frame-ancestors 'none'``, and ``Cache-Control: no-store``:
nothing of a tenant is kept by the browser. The page itself holds no data: everything it shows
comes from the API routes, authorized like any API call."""

from __future__ import annotations

import urllib.parse
from importlib.resources import files
from typing import TYPE_CHECKING

from aiohttp import web

from mdmbus.services.gateway.oidc import CLIENT_ID, EmbeddedProvider
from mdmbus.settings import Settings

if TYPE_CHECKING:
    from mdmbus.services.gateway.app import Gateway

__all__ = ["add_routes", "headers", "content_security_policy", "STATIC"]

#: File name -> content type, of every file the page is made of.
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "api.js": "text/javascript",
          "signin.js": "text/javascript", "render.js": "text/javascript",
          "style.css": "text/css", "favicon.svg": "image/svg+xml"}
_POLICY = web.AppKey("privacy_csp", str)


def content_security_policy(settings: Settings) -> str:
    connect = ["'self'"]
    if settings.oidc_token_url:
        parts = urllib.parse.urlsplit(settings.oidc_token_url)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {' '.join(connect)}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


async def headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set on every answer just before its headers go out (streamed ones included)."""
    response.headers["Content-Security-Policy"] = request.app[_POLICY]
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"


def _client_config(settings: Settings, provider: EmbeddedProvider | None) -> dict:
    if provider is not None:
        return provider.client_config()
    return {"client_id": settings.oidc_client_id or CLIENT_ID,
            "authorization_endpoint": settings.oidc_authorization_url,
            "token_endpoint": settings.oidc_token_url, "scope": "openid",
            "provider": "external"}


def add_routes(app: web.Application, gateway: "Gateway") -> None:
    """The page, its configuration and (without a configured identity provider) the embedded
    stack's OpenID Connect provider."""
    settings = gateway.settings
    app[_POLICY] = content_security_policy(settings)
    app.on_response_prepare.append(headers)
    provider = None if settings.oidc_authorization_url else \
        EmbeddedProvider(settings, gateway.region)
    if provider is not None:
        provider.add_routes(app)
    config = _client_config(settings, provider)
    root = files("mdmbus.services.gateway").joinpath("privacy")
    content = {name: root.joinpath(name).read_bytes() for name in STATIC}

    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=content[name], content_type=STATIC[name],
                            charset="utf-8")

    async def client(request: web.Request) -> web.Response:
        return web.json_response(config)

    async def to_page(request: web.Request) -> web.Response:
        return web.Response(status=308, headers={"Location": "/privacy/"})

    app.router.add_get("/privacy", to_page)
    app.router.add_get("/privacy/", page)
    app.router.add_get("/privacy/config.json", client)
    app.router.add_get("/privacy/{name}", page)
