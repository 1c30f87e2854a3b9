"""A token's lifetime is bounded whatever its signature (services/gateway/tokens.py)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mdmbus.services.gateway.tokens import TokenError, TokenVerifier

ISS, AUD = "https://issuer.test", "mdmbus-gateway"


@pytest.fixture
def signer(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="ES256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))

    def sign(lifetime: float, **claims) -> str:
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "sub": "s", "tid": str(uuid.uuid4()), "roles": ["admin"],
                "iat": now, "nbf": now, "exp": now + int(lifetime), **claims}
        return "Bearer " + jwt.encode(body, key, algorithm="ES256", headers={"kid": "k1"})
    return str(path), sign


@pytest.mark.parametrize("lifetime,ok", [(3600, True), (86400, True), (86401, False),
                                         (10 * 365 * 86400, False)])
def test_lifetime_beyond_the_maximum_is_refused(signer, lifetime, ok):
    path, sign = signer
    verifier = TokenVerifier(path, ISS, AUD, ["ES256"], max_lifetime_s=86400)
    if ok:
        assert verifier.verify(sign(lifetime)).role == "admin"
    else:
        with pytest.raises(TokenError) as refused:
            verifier.verify(sign(lifetime))
        assert refused.value.reason == "lifetime_too_long"


def test_a_non_numeric_iat_is_refused_not_trusted(signer):
    path, sign = signer
    verifier = TokenVerifier(path, ISS, AUD, ["ES256"], max_lifetime_s=86400)
    with pytest.raises(TokenError):
        verifier.verify(sign(60, iat="yesterday"))
