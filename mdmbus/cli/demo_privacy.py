"""The demo's pointer to the privacy center: its address and a one-time sign-in link for the
administrator of one of the demo's tenants (an active one, onboarded by this run)."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from mdmbus.cli.login_link import make_login_link
from mdmbus.settings import Settings

__all__ = ["print_privacy_center"]


async def print_privacy_center(settings: Settings, directory: asyncpg.Pool, since: dt.datetime,
                               stop: asyncio.Event, timeout_s: float = 60.0) -> None:
    """Waits (bounded) for a tenant of this run to be onboarded, then prints the link."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not stop.is_set() and loop.time() < deadline:
        row = await directory.fetchrow(
            "SELECT tenant_id, region FROM tenant_directory WHERE state = 'active'"
            " AND onboarded_at >= $1 ORDER BY onboarded_at, tenant_id LIMIT 1", since)
        if row is not None:
            region, tenant = row["region"], str(row["tenant_id"])
            print(f"demo: privacy center at {settings.gateway_url(region)}/privacy/ (and every "
                  f"region's gateway); sign in as the admin of tenant {tenant} with this one-time "
                  f"link (10 minutes; `mdmbus token --tenant ID --role admin --login-link` makes "
                  f"more):\n  {make_login_link(settings, tenant, 'admin', region, 3600)}",
                  flush=True)
            return
        await asyncio.sleep(0.25)
    print("demo: no tenant onboarded yet for the privacy center's link; make one with "
          "`mdmbus token --tenant ID --role admin --login-link`", flush=True)
