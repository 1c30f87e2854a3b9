"""What mypy made explicit: a part used before it is ready, or a key file of the wrong type,
fails with an error that names what is missing, not with an AttributeError on None or a
signature error deep inside cryptography or PyJWT."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry

from mdmbus.metrics import Metrics
from mdmbus.services.transit_watch import TransitWatch
from mdmbus.settings import Settings
from mdmbus.stack.pki import Pki
from mdmbus.stack.token_issuer import TokenIssuer
from mdmbus.streams.context import PipelineContext


def _rsa_pem() -> bytes:
    return rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def test_the_pipeline_stores_before_ready_say_so():
    ctx = PipelineContext.create(Settings(), ("eu",))
    with pytest.raises(RuntimeError, match=r"stores are not open yet: await ready\(\)"):
        _ = ctx.stores
    with pytest.raises(RuntimeError, match=r"directory cache is not open yet: await ready\(\)"):
        _ = ctx.region_cache


def test_a_transit_watch_measured_before_start_says_so():
    watch = TransitWatch(Settings(), "eu", Metrics(CollectorRegistry()))
    with pytest.raises(RuntimeError, match="transit watch of eu is not started"):
        asyncio.run(watch.measure())


def test_a_token_signing_key_that_is_not_ec_is_named(tmp_path):
    issuer = TokenIssuer(tmp_path, "https://issuer.test", "mdmbus").ensure()
    issuer.key_file.write_bytes(_rsa_pem())
    with pytest.raises(ValueError, match=rf"{issuer.key_file} is not an EC key .*RSAPrivateKey"):
        issuer.issue(str(uuid.uuid4()), "connector")


def test_a_ca_key_that_is_not_ec_is_named(tmp_path):
    pki = Pki(tmp_path)
    pki.ensure_ca()
    (tmp_path / "ca.key").write_bytes(_rsa_pem())
    with pytest.raises(ValueError, match=r"ca.key is not the EC key this CA is made with"):
        pki.ensure("leaf", server=False)


def test_an_ec_key_still_signs(tmp_path):
    """The positive control of the two above: the keys the stack makes pass the new check."""
    issuer = TokenIssuer(tmp_path, "https://issuer.test", "mdmbus").ensure()
    assert isinstance(serialization.load_pem_private_key(issuer.key_file.read_bytes(), None),
                      ec.EllipticCurvePrivateKey)
    assert issuer.issue(str(uuid.uuid4()), "connector").count(".") == 2
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    cert, key = pki.ensure("leaf", server=False)
    assert cert.exists() and key.exists()
