"""One-time login links of the embedded stack's identity provider: what stands in for an
IdP's login page. An operator makes one (``mdmbus token --tenant ID --role admin
--login-link``) and hands it to the tenant's administrator; opening it signs them in once.

A link carries a random ticket; the issuer's directory keeps only its SHA-256, with the
tenant, role, region and expiry, in a file of its own. Consuming a ticket removes the file:
the filesystem's unlink succeeds once, so a ticket is single-use even across gateway
processes, and a replayed or expired link is refused."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mdmbus.services.gateway.access import ROLES
from mdmbus.stack.pki import write_private

__all__ = ["LoginTicket", "LoginTickets", "LINK_VALID_S"]

#: How long a link may wait to be opened.
LINK_VALID_S = 600.0


@dataclass(frozen=True)
class LoginTicket:
    tenant: str
    role: str
    region: str
    #: Seconds the access token obtained through it is valid.
    token_ttl_s: float
    expires_at: float


class LoginTickets:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, ticket: str) -> Path:
        return self.root / f"{hashlib.sha256(ticket.encode()).hexdigest()}.json"

    def create(self, tenant: str, role: str, region: str, token_ttl_s: float,
               valid_s: float = LINK_VALID_S) -> str:
        """A new ticket (the secret part of a link)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        ticket = secrets.token_urlsafe(32)
        write_private(self._path(ticket), json.dumps({
            "tenant": str(uuid.UUID(tenant)), "role": role, "region": region,
            "token_ttl_s": token_ttl_s, "expires_at": time.time() + valid_s}).encode())
        self._prune()
        return ticket

    def peek(self, ticket: str) -> LoginTicket | None:
        """The ticket's content without using it (None: unknown, used or malformed)."""
        if not ticket or len(ticket) > 128:
            return None
        try:
            data = json.loads(self._path(ticket).read_text(encoding="utf-8"))
            return LoginTicket(data["tenant"], data["role"], data["region"],
                               float(data["token_ttl_s"]), float(data["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def consume(self, ticket: str) -> LoginTicket | None:
        """The ticket, used up now; None if it is unknown, used already or expired."""
        found = self.peek(ticket)
        if found is None:
            return None
        try:
            os.unlink(self._path(ticket))
        except FileNotFoundError:  # another request used it first
            return None
        return found if found.expires_at > time.time() else None

    def _prune(self) -> None:
        """Removes the files of links that expired unused."""
        now = time.time()
        for path in self.root.glob("*.json"):
            try:
                if json.loads(path.read_text(encoding="utf-8"))["expires_at"] < now:
                    path.unlink()
            except (OSError, ValueError, KeyError, TypeError):
                continue
