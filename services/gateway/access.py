"""Who may call what: the roles a token can carry and the routes each role may use. The one
place these are written; the gateway enforces them and the OpenAPI file documents them."""

from __future__ import annotations

__all__ = ["ROLES", "ALLOWED", "allowed"]

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
