"""Every limit of the contract that is not an Avro type, defined once.

The producer (``mdmbus produce`` and its Python API), the pipeline's classifier and the gateway
all read these, and docs/contract.md prints them, so one record gets one verdict wherever it is
checked. Recognising key material (what a PEM label or a DER outline means) is
:mod:`mdmbus.contract.keys`; the labels themselves are here.
"""

from __future__ import annotations

import re

__all__ = ["MAX_RECORD_BYTES", "CANONICAL_UUID", "COUNTRY_CODE", "PRIVATE_KEY_PEM",
           "CERTIFICATE_PEM", "PUBLIC_PEM_LABELS", "is_canonical_uuid", "oversized"]

#: The largest message value (marker, fingerprint and Avro body) any topic accepts. Larger
#: values are refused before they are decoded (reason ``oversized``); the Kafka producers'
#: 1 MiB request limit is far above it, so a refusal is always this contract's, never Kafka's.
MAX_RECORD_BYTES = 512 * 1024

#: A uuid as the contract writes it: lower-case canonical text, 36 characters. Upper-case,
#: braced, hyphen-less and ``urn:uuid:`` forms are refused: uuids are Kafka keys, and two
#: spellings of one id would land on two partitions.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

#: An onboarding country: ISO 3166-1 alpha-2, two upper-case letters.
COUNTRY_CODE = re.compile(r"[A-Z]{2}\Z")

#: A PEM private key of any algorithm, encrypted or not ("PRIVATE KEY", "RSA PRIVATE KEY",
#: "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY", ...).
PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
#: A PEM certificate under any label that ends in CERTIFICATE ("CERTIFICATE",
#: "TRUSTED CERTIFICATE", "X509 CERTIFICATE", ...).
CERTIFICATE_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*CERTIFICATE-----")
#: PEM labels U10's public-key-only field may carry.
PUBLIC_PEM_LABELS = frozenset((b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE"))


def is_canonical_uuid(value: object) -> bool:
    """True for a str in lower-case canonical uuid form, false for anything else."""
    return isinstance(value, str) and CANONICAL_UUID.match(value) is not None


def oversized(size: int) -> str | None:
    """The refusal message for a message value of ``size`` bytes, or None if it fits."""
    if size > MAX_RECORD_BYTES:
        return f"{size} bytes is over the {MAX_RECORD_BYTES}-byte limit of a record"
    return None
