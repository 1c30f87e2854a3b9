"""The gateway's bearer-token check (services/gateway/tokens.py) on tokens made here with PyJWT
and cryptography: what it accepts, and every way a token must be refused, with the reason
label it is refused under. The caller's tenant and role come from the verified token only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mdmbus.services.gateway.tokens import REFUSALS, Caller, TokenError, TokenVerifier

ISSUER = "https://issuer.test/mdmbus"
AUDIENCE = "mdmbus-gateway"
TENANT = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return dict(jwk, kid=kid, use="sig", alg="ES256")


@pytest.fixture
def keys(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(key, "k1")]}))
    return key, path


def _claims(**over) -> dict:
    """The claims of a valid token, with ``over`` replacing some; a callable is given the time
    of the call (parameters are built when tests are collected, which may be long before)."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "connector@tenant", "tid": TENANT,
              "roles": ["connector"], "iat": now, "nbf": now, "exp": now + 600}
    claims.update({k: v(now) if callable(v) else v for k, v in over.items()})
    return {k: v for k, v in claims.items() if v is not ...}


def _token(key, claims: dict | None = None, kid: str | None = "k1", alg: str = "ES256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims or _claims(), key, algorithm=alg, headers=headers)


def _verifier(path: Path) -> TokenVerifier:
    return TokenVerifier(str(path), ISSUER, AUDIENCE, ["ES256"], leeway_s=30)


def _refusal(verifier: TokenVerifier, header: str | None) -> str:
    with pytest.raises(TokenError) as caught:
        verifier.verify(header)
    assert caught.value.reason in REFUSALS
    return caught.value.reason


def test_a_valid_token_names_its_tenant_role_and_subject(keys) -> None:
    key, path = keys
    caller = _verifier(path).verify(f"Bearer {_token(key)}")
    assert caller == Caller(uuid.UUID(TENANT), "connector", "connector@tenant")
    # The scheme is case-insensitive; surrounding blanks are not part of the token.
    assert _verifier(path).verify(f"bearer   {_token(key)}  ").tenant == uuid.UUID(TENANT)


@pytest.mark.parametrize("header, reason", [
    (None, "missing"), ("", "missing"), ("Basic dXNlcjpwYXNz", "malformed"),
    ("Bearer", "malformed"), ("Bearer    ", "malformed"), ("Bearer not.a.jwt", "malformed"),
    ("Bearer " + "a" * 40, "malformed"),
])
def test_absent_and_malformed_headers_are_refused(keys, header, reason) -> None:
    assert _refusal(_verifier(keys[1]), header) == reason


def test_an_unsigned_token_is_refused(keys) -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    assert _refusal(_verifier(keys[1]), f"Bearer {token}") == "algorithm_not_allowed"


def test_an_hmac_token_keyed_with_the_public_key_is_refused(keys) -> None:
    """Algorithm confusion: HS256 "signed" with the issuer's public key as the secret."""
    key, path = keys
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{part(_claims())}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert _refusal(_verifier(path), f"Bearer {token}") == "algorithm_not_allowed"


def test_an_rsa_token_is_refused_where_only_es256_is_allowed(keys) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = _token(other, alg="RS256")
    assert _refusal(_verifier(keys[1]), f"Bearer {token}") == "algorithm_not_allowed"


def test_a_token_signed_by_another_key_under_the_issuers_key_id_is_refused(keys) -> None:
    stolen_kid = _token(ec.generate_private_key(ec.SECP256R1()), kid="k1")
    assert _refusal(_verifier(keys[1]), f"Bearer {stolen_kid}") == "bad_signature"


def test_a_token_whose_claims_were_changed_after_signing_is_refused(keys) -> None:
    """A stolen token rewritten for another tenant (or role) no longer verifies."""
    key, path = keys
    head, payload, signature = _token(key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for change in ({"tid": str(uuid.uuid4())}, {"roles": ["admin"]}):
        forged = base64.urlsafe_b64encode(json.dumps(dict(claims, **change)).encode()).rstrip(b"=")
        token = f"{head}.{forged.decode()}.{signature}"
        assert _refusal(_verifier(path), f"Bearer {token}") == "bad_signature"


def test_an_unknown_key_id_is_refused_and_no_key_id_needs_a_single_key(keys, tmp_path) -> None:
    key, path = keys
    assert _refusal(_verifier(path), f"Bearer {_token(key, kid='k9')}") == "unknown_key"
    assert _verifier(path).verify(f"Bearer {_token(key, kid=None)}").role == "connector"
    second = ec.generate_private_key(ec.SECP256R1())
    path.write_text(json.dumps({"keys": [_jwk(key, "k1"), _jwk(second, "k2")]}))
    assert _refusal(_verifier(path), f"Bearer {_token(key, kid=None)}") == "unknown_key"


def test_a_rotated_key_set_is_read_again(keys) -> None:
    key, path = keys
    verifier = _verifier(path)
    assert verifier.verify(f"Bearer {_token(key)}")
    new = ec.generate_private_key(ec.SECP256R1())
    path.write_text(json.dumps({"keys": [_jwk(new, "k2")]}) + " " * 7)  # size changes too
    assert verifier.verify(f"Bearer {_token(new, kid='k2')}").tenant == uuid.UUID(TENANT)
    assert _refusal(verifier, f"Bearer {_token(key)}") == "unknown_key"


@pytest.mark.parametrize("claims, reason", [
    ({"exp": lambda now: now - 31}, "expired"),
    ({"nbf": lambda now: now + 120}, "not_yet_valid"),
    ({"iss": "https://elsewhere.test/"}, "wrong_issuer"),
    ({"aud": "another-service"}, "wrong_audience"),
    *(({name: ...}, "missing_claim") for name in ("exp", "nbf", "iat", "iss", "aud", "tid",
                                                  "roles", "sub")),
    ({"tid": TENANT.upper()}, "bad_claim"),
    ({"tid": "not-a-tenant"}, "bad_claim"),
    ({"tid": 42}, "bad_claim"),
    ({"roles": []}, "bad_claim"),
    ({"roles": ["superuser"]}, "bad_claim"),
    ({"roles": ["connector", "admin"]}, "bad_claim"),
])
def test_claims_that_are_wrong_or_missing_are_refused(keys, claims, reason) -> None:
    key, path = keys
    assert _refusal(_verifier(path), f"Bearer {_token(key, _claims(**claims))}") == reason


def test_the_leeway_is_thirty_seconds_and_no_more(keys) -> None:
    key, path = keys
    late = _token(key, _claims(exp=int(time.time()) - 20))
    assert _verifier(path).verify(f"Bearer {late}").role == "connector"
    assert _refusal(_verifier(path), f"Bearer {_token(key, _claims(exp=int(time.time()) - 40))}") \
        == "expired"


def test_one_role_as_text_or_among_unknown_ones_is_that_role(keys) -> None:
    key, path = keys
    assert _verifier(path).verify(f"Bearer {_token(key, _claims(roles='admin'))}").role == "admin"
    mixed = _token(key, _claims(roles=["auditor", "something-else"]))
    assert _verifier(path).verify(f"Bearer {mixed}").role == "auditor"


def test_a_key_set_at_an_https_url_is_fetched_once_and_kept_five_minutes(keys, monkeypatch):
    """The identity provider's JWKS by URL (services/gateway/tokens.py _RemoteKeySet): no
    network here, the fetch is replaced by the key set and counted."""
    key, path = keys
    fetched = []

    def fetch_data(client):
        fetched.append(client.uri)
        return json.loads(path.read_text())
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
    url = "https://idp.example/keys"
    verifier = TokenVerifier(url, ISSUER, AUDIENCE, ["ES256"], leeway_s=30)
    assert verifier.verify(f"Bearer {_token(key)}") == Caller(uuid.UUID(TENANT), "connector",
                                                             "connector@tenant")
    # without a key id, the set's first key
    assert verifier.verify(f"Bearer {_token(key, kid=None)}").tenant == uuid.UUID(TENANT)
    assert fetched == [url]
    cache = verifier.keys.client.jwk_set_cache
    assert cache is not None and cache.lifespan == 300
    assert hasattr(verifier.keys.client.get_signing_key, "cache_info")  # keys kept by id
    other = ec.generate_private_key(ec.SECP256R1())
    assert _refusal(verifier, f"Bearer {_token(other, kid='k9')}") == "unknown_key"
    with pytest.raises(TokenError, match=r"not in the key set \(PyJWKClientError\)"):
        verifier.verify(f"Bearer {_token(other, kid='k9')}")


# The texts below are written out by hand: they are what a tenant's system reads in the
# gateway's 401 answer ({"error": "invalid_token", "reason": ..., "message": ...}).
ONLY_ES256 = "only ES256 tokens are accepted"
NOT_BEARER = "the Authorization header is not 'Bearer <token>'"


def _text(verifier: TokenVerifier, header: str | None) -> tuple[str, str]:
    with pytest.raises(TokenError) as caught:
        verifier.verify(header)
    return caught.value.reason, str(caught.value)


@pytest.mark.parametrize("header, expected", [
    (None, ("missing", "no bearer token (Authorization: Bearer <token>)")),
    ("", ("missing", "no bearer token (Authorization: Bearer <token>)")),
    ("Basic dXNlcjpwYXNz", ("malformed", NOT_BEARER)),
    ("Bearer    ", ("malformed", NOT_BEARER)),
    ("Bearer not.a.jwt", ("malformed", "the token is not a well-formed JWT")),
])
def test_a_refused_header_is_told_why_in_words(keys, header, expected) -> None:
    assert _text(_verifier(keys[1]), header) == expected


def test_a_valid_token_under_another_scheme_is_refused(keys) -> None:
    """Only the Bearer scheme carries a token: a well-signed token sent as 'Basic' or
    'Token' is refused, not accepted for the token it holds."""
    key, path = keys
    for scheme in ("Basic", "Token", "JWT"):
        assert _text(_verifier(path), f"{scheme} {_token(key)}") == ("malformed", NOT_BEARER)


def test_each_token_refusal_is_told_in_words(keys) -> None:
    key, path = keys
    verifier = _verifier(path)
    stranger = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "unsigned": (jwt.encode(_claims(), None, algorithm="none"),
                     ("algorithm_not_allowed", ONLY_ES256)),
        "rsa": (_token(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                       alg="RS256"), ("algorithm_not_allowed", ONLY_ES256)),
        "unknown key id": (_token(key, kid="k9"),
                           ("unknown_key", "the token's signing key is not in the key set")),
        "another key": (_token(stranger), ("bad_signature",
                                           "the token's signature does not verify")),
        "expired": (_token(key, _claims(exp=lambda now: now - 60)),
                    ("expired", "the token has expired")),
        "not yet valid": (_token(key, _claims(nbf=lambda now: now + 120)),
                          ("not_yet_valid", "the token is not valid yet (nbf/iat)")),
        "issuer": (_token(key, _claims(iss="https://elsewhere.test/")),
                   ("wrong_issuer", "the token was not issued by the trusted issuer")),
        "audience": (_token(key, _claims(aud="another-service")),
                     ("wrong_audience", "the token is not addressed to this gateway")),
        "no tenant": (_token(key, _claims(tid=...)),
                      ("missing_claim", "the token lacks a required claim")),
        "a day and a second": (_token(key, _claims(exp=lambda now: now + 24 * 3600 + 1)),
                               ("lifetime_too_long",
                                "a token may live at most 86400 s (exp - iat)")),
        "tenant": (_token(key, _claims(tid="not-a-tenant")),
                   ("bad_claim", "the tid claim is not a tenant id")),
        "role": (_token(key, _claims(roles=["superuser"])),
                 ("bad_claim", "the roles claim must hold one of connector, admin, auditor")),
    }
    told = {name: _text(verifier, f"Bearer {token}") for name, (token, _) in cases.items()}
    assert told == {name: expected for name, (_, expected) in cases.items()}


def test_the_refusal_names_every_algorithm_allowed(keys) -> None:
    verifier = TokenVerifier(str(keys[1]), ISSUER, AUDIENCE, ["ES256", "ES384"])
    token = jwt.encode(_claims(), None, algorithm="none")
    assert _text(verifier, f"Bearer {token}") == (
        "algorithm_not_allowed", "only ES256, ES384 tokens are accepted")


def test_a_key_set_without_keys_refuses_every_token(keys, tmp_path) -> None:
    """Fail closed: a key set file holding no key (an issuer's rotation gone wrong) verifies
    nothing; the token is refused, never let through unchecked."""
    key, _ = keys
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"keys": []}))
    assert _text(_verifier(empty), f"Bearer {_token(key)}") == (
        "malformed", "the token is not valid")


def test_the_default_leeway_is_thirty_seconds(keys) -> None:
    """The gateway builds its verifier with the default leeway (services/gateway/server.py):
    a token expired 30 s ago (to the second) is refused, one expired 25 s ago is accepted."""
    key, path = keys
    verifier = TokenVerifier(str(path), ISSUER, AUDIENCE, ["ES256"])
    assert verifier.verify(f"Bearer {_token(key, _claims(exp=lambda now: now - 25))}").role \
        == "connector"
    assert _text(verifier, f"Bearer {_token(key, _claims(exp=lambda now: now - 30))}") == (
        "expired", "the token has expired")
