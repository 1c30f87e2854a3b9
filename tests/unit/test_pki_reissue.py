"""The stack's certificates follow its CA: a CA made again (its files deleted by an operator)
gets every certificate issued again on the next start, instead of servers presenting
certificates no client can verify any more."""

from __future__ import annotations

from cryptography import x509

from mdmbus.stack.pki import Pki


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_new_ca_gets_every_certificate_issued_again(tmp_path):
    pki = Pki(tmp_path)
    cert_file, _ = pki.ensure("broker", server=True)
    first = _cert(cert_file)
    assert pki.ensure("broker", server=True)[0].read_bytes() == cert_file.read_bytes()
    pki.ca_file.unlink()
    (tmp_path / "ca.key").unlink()
    pki.ensure_ca()
    again = _cert(pki.ensure("broker", server=True)[0])
    assert again.serial_number != first.serial_number
    again.verify_directly_issued_by(_cert(pki.ca_file))  # raises if not the new CA's
