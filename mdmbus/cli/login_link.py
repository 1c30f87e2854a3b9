"""``mdmbus token --tenant ID --role admin --login-link``: a one-time sign-in link to the privacy
center of the tenant's gateway, the embedded stack's stand-in for an identity provider's login
page (mdmbus/stack/login_links.py)."""

from __future__ import annotations

import asyncio
import sys
import uuid

from mdmbus.errors import UsageError
from mdmbus.settings import Settings

__all__ = ["login_link", "make_login_link"]


async def _region_of(settings: Settings, tenant: uuid.UUID) -> str | None:
    from mdmbus.identities import role_of
    from mdmbus.regions import DIRECTORY_DATABASE
    from mdmbus.services.stores.pools import open_pool
    pool = await open_pool(settings, DIRECTORY_DATABASE, role_of("directory-reader"), max_size=1,
                           application="mdmbus-token")
    try:
        return await pool.fetchval("SELECT region FROM tenant_directory WHERE tenant_id = $1",
                                   tenant)
    finally:
        await pool.close()


def make_login_link(settings: Settings, tenant: str, role: str, region: str,
                    session_ttl_s: float) -> str:
    """A new one-time link (for the demo and the tests, which know the region)."""
    from mdmbus.stack.login_links import LoginTickets
    ticket = LoginTickets(settings.issuer_dir / "login-links").create(tenant, role, region,
                                                                      session_ttl_s)
    return f"{settings.gateway_url(region)}/oidc/login?ticket={ticket}"


def login_link(settings: Settings, tenant: str, role: str, session_ttl_s: float,
               region: str | None) -> int:
    if settings.oidc_authorization_url:
        raise UsageError("login links are the embedded stack's sign-in; this installation signs "
                         f"in with {settings.oidc_authorization_url}")
    try:
        tenant_id = uuid.UUID(tenant)
    except ValueError:
        raise UsageError(f"--tenant {tenant!r} is not a uuid") from None
    if region is None:
        region = asyncio.run(_region_of(settings, tenant_id))
        if region is None:
            raise UsageError(f"tenant {tenant_id} is not onboarded (or give --region)")
    print(make_login_link(settings, str(tenant_id), role, region, session_ttl_s))
    print(f"single use, valid 10 minutes: open it in a browser to sign in to "
          f"{settings.gateway_url(region)}/privacy/ as {role}", file=sys.stderr)
    return 0
