"""Bearer tokens: a JWT signed by the configured identity provider, checked against its key
set (a JWKS file or an https URL) with PyJWT: the algorithms pinned, issuer, audience, expiry
and not-before required and checked, and a tenant (``tid``) and a role (``roles``) claim.

Nothing of the token's content is trusted before its signature is: the only unverified read
is the header's key id, to pick the key."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Sequence

import jwt

from mdmbus.contract.limits import is_canonical_uuid
from mdmbus.services.gateway.access import ROLES

__all__ = ["Caller", "TokenError", "TokenVerifier", "REFUSALS"]

#: Why a token is refused: the bounded label of mdmbus_gateway_tokens_refused_total.
REFUSALS = ("missing", "malformed", "unknown_key", "bad_signature", "algorithm_not_allowed",
            "expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "missing_claim",
            "bad_claim", "lifetime_too_long")


class TokenError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    tenant: uuid.UUID
    role: str
    subject: str


class _KeySet:
    """A JWKS file, read again when it changes (a key rotated by the issuer)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, float] | None = None
        #: By key id (None: a key published without one).
        self._keys: dict[str | None, jwt.PyJWK] = {}

    def key(self, kid: str | None) -> jwt.PyJWK:
        stat = os.stat(self.path)
        if (stat.st_size, stat.st_mtime) != self._stamp:
            with open(self.path, encoding="utf-8") as f:
                keyset = jwt.PyJWKSet.from_dict(json.load(f))
            self._keys = {k.key_id: k for k in keyset.keys}
            self._stamp = (stat.st_size, stat.st_mtime)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        try:
            return self._keys[kid]
        except KeyError:
            raise TokenError("unknown_key", "the token's signing key is not in the key set") \
                from None


class _RemoteKeySet:
    def __init__(self, url: str) -> None:
        self.client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300)

    def key(self, kid: str | None) -> jwt.PyJWK:
        try:
            return self.client.get_signing_key(kid) if kid else self.client.get_signing_keys()[0]
        except jwt.PyJWKClientError as exc:
            raise TokenError("unknown_key", f"the token's signing key is not in the key set "
                                            f"({type(exc).__name__})") from None


_ERRORS: Sequence[tuple[type, str, str]] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token is not addressed to this gateway"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token was not issued by the trusted issuer"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "algorithm_not_allowed", "the token's algorithm is not allowed"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
    (jwt.DecodeError, "malformed", "the token is not a well-formed JWT"),
    (jwt.InvalidTokenError, "malformed", "the token is not valid"),
)


class TokenVerifier:
    def __init__(self, jwks: str, issuer: str, audience: str, algorithms: Sequence[str],
                 leeway_s: float = 30.0, max_lifetime_s: float = 24 * 3600.0) -> None:
        self.keys = _RemoteKeySet(jwks) if jwks.startswith("https://") else _KeySet(jwks)
        self.issuer = issuer
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s
        #: A token claiming a longer life (exp - iat) is refused, however well signed: a
        #: leaked long-lived token would otherwise outlast every rotation.
        self.max_lifetime_s = max_lifetime_s

    def verify(self, authorization: str | None) -> Caller:
        """The caller of a request with this Authorization header; TokenError says why not."""
        if not authorization:
            raise TokenError("missing", "no bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("malformed", "the Authorization header is not 'Bearer <token>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.algorithms:
                raise TokenError("algorithm_not_allowed",
                                 f"only {', '.join(self.algorithms)} tokens are accepted")
            key = self.keys.key(header.get("kid"))
            claims = jwt.decode(token, key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid",
                                                     "roles", "sub"]})
        except TokenError:
            raise
        except jwt.PyJWTError as exc:
            for cls, reason, text in _ERRORS:
                if isinstance(exc, cls):
                    raise TokenError(reason, text) from None
            raise TokenError("malformed", "the token is not valid") from None
        lifetime = claims["exp"] - claims["iat"] \
            if all(isinstance(claims[c], (int, float)) for c in ("exp", "iat")) else None
        if lifetime is None or lifetime > self.max_lifetime_s:
            raise TokenError("lifetime_too_long", f"a token may live at most "
                                                  f"{self.max_lifetime_s:g} s (exp - iat)")
        tenant, roles = claims["tid"], claims["roles"]
        if not is_canonical_uuid(tenant):
            raise TokenError("bad_claim", "the tid claim is not a tenant id")
        known = [r for r in (roles if isinstance(roles, list) else [roles]) if r in ROLES]
        if len(known) != 1:
            raise TokenError("bad_claim", f"the roles claim must hold one of {', '.join(ROLES)}")
        return Caller(uuid.UUID(tenant), known[0], str(claims["sub"]))
