"""Who may call what: the roles a token can carry and the routes each role may use, and which
tenants a region's gateway serves. The one place these are written; the gateway enforces them
and the OpenAPI file documents them."""

from __future__ import annotations

from mdmbus.services.stores.directory import PURGED, Entry

__all__ = ["ROLES", "ALLOWED", "allowed", "tenant_refusal", "NOT_ONBOARDED", "WRONG_REGION",
           "TENANT_DELETED"]

#: The roles a tenant's caller may hold (the ``roles`` claim).
ROLES = ("connector", "admin", "auditor")

#: Route name -> the roles allowed to call it.
ALLOWED: dict[str, frozenset[str]] = {
    "upload": frozenset({"connector", "admin"}),
    "relay_download": frozenset({"connector"}),
    "relay_ack": frozenset({"connector"}),
    "export": frozenset({"admin", "auditor"}),
    "deletion_request": frozenset({"admin"}),
    "erasure_receipt": frozenset({"admin", "auditor"}),
    "status": frozenset({"connector", "admin", "auditor"}),
    "holdings": frozenset({"admin", "auditor"}),
    "erasure_receipts": frozenset({"admin", "auditor"}),
}


def allowed(route: str, role: str) -> bool:
    return role in ALLOWED[route]


#: Why a region's gateway turns a tenant's caller away (its answer: 403, 421, 410).
NOT_ONBOARDED, WRONG_REGION, TENANT_DELETED = ("tenant_not_onboarded", "wrong_region",
                                               "tenant_deleted")


def tenant_refusal(entry: Entry | None, region: str, *, purged_ok: bool = False) -> str | None:
    """Why the gateway of ``region`` does not serve the tenant whose directory entry is
    ``entry`` (None: not in the directory), or None: it lives in another region (its data is
    served there only, rule 1), or its data was deleted (unless the route reports on a purged
    tenant, ``purged_ok``)."""
    if entry is None:
        return NOT_ONBOARDED
    if entry.region != region:
        return WRONG_REGION
    if entry.state == PURGED and not purged_ok:
        return TENANT_DELETED
    return None
