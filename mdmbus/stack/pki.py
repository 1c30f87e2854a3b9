"""The embedded stack's certificate authority: a CA and the server and client certificates the
stack's TLS listeners and clients use, generated into the state directory on first start.

Keys are unencrypted PKCS#8 PEM in files of mode 0600 (Kafka's PEM keystore on Java 17 loads
no other key form); server certificates name 127.0.0.1 and localhost, since every client checks
the host name. Nothing here is for production: there, certificates come from your own CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "write_private"]


def write_private(path: Path, data: bytes) -> None:
    """Writes ``data`` to a file only its owner can read (0600), whatever existed there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False)


def _still_good(cert_file: Path, ca_file: Path, common_name: str, usages: set,
                names: set) -> bool:
    """Whether the certificate in ``cert_file`` was issued by the CA in ``ca_file`` (a CA made
    again leaves every older certificate unverifiable), is for ``common_name``, with exactly
    these extended usages and host names, and valid for 30 more days."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_file.read_bytes()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value != common_name:
        return False
    try:
        have_usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        have_usages = set()
    try:
        have_names = set(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        have_names = set()
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    return have_usages == usages and have_names == names and cert.not_valid_after_utc > soon


@dataclass(frozen=True)
class Pki:
    """The CA in ``root`` (``ca.crt``, ``ca.key``) and the certificates issued by it."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    def cert_file(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key_file(self, name: str) -> Path:
        return self.root / f"{name}.key"

    def ensure_ca(self, common_name: str = "mdmbus embedded stack CA") -> None:
        if self.ca_file.exists() and (self.root / "ca.key").exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, **_USAGE), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        write_private(self.root / "ca.key", _pkcs8(key))
        write_private(self.ca_file, _pem(cert))

    def ensure(self, name: str, *, server: bool, hostnames: tuple[str, ...] = (),
               common_name: str | None = None, client: bool | None = None) -> tuple[Path, Path]:
        """(certificate, key) in the files named ``name`` for ``common_name`` (default:
        ``name``), issued again only when the files are missing, or the certificate says
        something else than asked (usages, host names: a changed MDMBUS_TLS_HOSTNAMES, a
        certificate of an older mdmbus) or expires within 30 days. A server certificate names
        127.0.0.1, localhost and ``hostnames``; it authenticates a client only when ``client``
        says so (a broker does, to its controller), so a server's key is never a Kafka
        principal's credential. A client certificate's common name is its Kafka principal."""
        client = (not server) if client is None else client
        self.ensure_ca()
        cert_file, key_file = self.cert_file(name), self.key_file(name)
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        names = {x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                 *(x509.DNSName(h) for h in hostnames)} if server else set()
        if cert_file.exists() and key_file.exists() and _still_good(
                cert_file, self.ca_file, common_name or name, set(usages), names):
            return cert_file, key_file
        ca_key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.root / 'ca.key'} is not the EC key this CA is made with "
                             f"(it holds a {type(ca_key).__name__}): remove the CA to make it anew")
        ca_cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               common_name or name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=825))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                                crl_sign=False, **_USAGE), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
                 *(x509.DNSName(h) for h in hostnames)]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(key_file, _pkcs8(key))
        write_private(cert_file, _pem(cert) + _pem(ca_cert))  # leaf, then its CA: a full chain
        return cert_file, key_file
