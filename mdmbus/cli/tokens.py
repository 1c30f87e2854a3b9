"""`mdmbus token`: a token for a simulated tenant from the embedded stack's issuer, printed,
or written as a CM connector's token file."""

from __future__ import annotations

import json
import sys
import uuid

from mdmbus.errors import UsageError
from mdmbus.settings import Settings

__all__ = ["issue_token"]


def issue_token(settings: Settings, tenant: str, role: str, ttl_s: float, region: str | None,
                write: bool) -> int:
    from mdmbus.stack import issuer
    from mdmbus.stack.pki import write_private
    try:
        tenant = str(uuid.UUID(tenant))
    except ValueError:
        raise UsageError(f"--tenant {tenant!r} is not a uuid") from None
    token = issuer(settings).issue(tenant, role, ttl_s)
    if not write:
        print(token)
        return 0
    if region is None:
        raise UsageError("--write needs --region: the token file names the tenant's gateway")
    path = settings.cm_tokens_path / f"{tenant}.json"
    write_private(path, json.dumps({"tenant_id": tenant, "gateway": settings.gateway_url(region),
                                    "token": token}).encode())
    print(f"wrote {path} (the CM connector serves every tenant with a file there)",
          file=sys.stderr)
    return 0
