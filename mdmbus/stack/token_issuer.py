"""A small token issuer for the embedded stack's simulated tenants (``mdmbus token``).

It signs JWTs as the cloud service's identity provider would (ES256, with issuer, audience,
expiry, not-before, the tenant in ``tid`` and the role in ``roles``, as Microsoft Entra ID's
application tokens carry them) with a key generated into the state directory, and publishes the
public key as a JWKS file. The gateway only verifies tokens against a configured key set
(MDMBUS_JWKS, a file or an https URL), so a real identity provider replaces this issuer by
configuration alone."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mdmbus.services.gateway.access import ROLES
from mdmbus.stack.pki import write_private

__all__ = ["TokenIssuer"]



@dataclass(frozen=True)
class TokenIssuer:
    root: Path
    issuer: str
    audience: str

    @property
    def key_file(self) -> Path:
        return self.root / "signing.key"

    @property
    def jwks_file(self) -> Path:
        return self.root / "jwks.json"

    def ensure(self) -> "TokenIssuer":
        """Generates the signing key and its JWKS once."""
        if self.key_file.exists() and self.jwks_file.exists():
            return self
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(self.key_file, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        public.update(kid=uuid.uuid4().hex[:16], use="sig", alg="ES256")
        self.jwks_file.write_text(json.dumps({"keys": [public]}, indent=2) + "\n")
        return self

    def _kid(self) -> str:
        return json.loads(self.jwks_file.read_text())["keys"][0]["kid"]

    def issue(self, tenant: str, role: str, ttl_s: float = 3600.0, *,
              subject: str | None = None) -> str:
        """A signed token for ``tenant`` in ``role``, valid for ``ttl_s`` seconds."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self.ensure()
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": subject or f"{role}@{tenant}",
                  "tid": str(uuid.UUID(tenant)), "roles": [role], "iat": now, "nbf": now,
                  "exp": now + int(ttl_s), "jti": uuid.uuid4().hex}
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_file} is not an EC key (ES256 needs one; it holds a "
                             f"{type(key).__name__})")
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": self._kid()})
