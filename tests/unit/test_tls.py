"""mdmbus/tls.py: the one place TLS contexts are built."""

from __future__ import annotations

import datetime as dt
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mdmbus.tls import client_ssl_context, server_ssl_context


def _self_signed(common_name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _subjects(context: ssl.SSLContext) -> set[str]:
    return {dict(x[0] for x in c["subject"])["commonName"] for c in context.get_ca_certs()}


def test_every_context_refuses_tls_below_1_2(tmp_path):
    cert, key = _self_signed("mdmbus test")
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    client = client_ssl_context(tmp_path / "c.crt")
    with_cert = client_ssl_context(tmp_path / "c.crt", tmp_path / "c.crt", tmp_path / "c.key")
    server = server_ssl_context(tmp_path / "c.crt", tmp_path / "c.key")
    for context in (client, with_cert, server):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_a_ca_made_again_at_the_same_path_is_read_again(tmp_path):
    """A cache keyed by the path alone would keep trusting the old CA and refuse the new one's
    certificates until the process restarts."""
    path = tmp_path / "ca.crt"
    path.write_bytes(_self_signed("first CA")[0])
    assert _subjects(client_ssl_context(path)) == {"first CA"}
    assert client_ssl_context(path) is client_ssl_context(path), "the same files: one context"
    path.write_bytes(_self_signed("second CA, a longer name than the first")[0])
    assert _subjects(client_ssl_context(path)) == {"second CA, a longer name than the first"}
