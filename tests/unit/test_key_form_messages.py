"""What a producer is told when a field holds a private key without PEM armour: the reason,
the field and the form the key was found in, exactly, from the producer's check and from the
pipeline's verdict on the same record as bytes (tests/unit/test_refusal_messages.py has the
other refusals)."""

from __future__ import annotations

import base64

import pytest

from mdmbus.contract import ValidationError, default_registry, validate
from mdmbus.contract.verdict import Refused, check_message
from tests.unit.examples import der, example, pem

REGISTRY = default_registry()
RSA = der("rsa_private_pkcs1")

#: (kind, field, value, the form named in the message)
CASES = {
    "base64 DER in text": ("U9", "device_name", base64.b64encode(RSA).decode(), "base64"),
    "hex DER in text": ("U9", "device_name", RSA.hex(), "hex"),
    "a PEM file base64 encoded": ("U9", "device_name", base64.b64encode(
        pem("RSA PRIVATE KEY", RSA)).decode(), "pem"),
    "raw DER in bytes": ("U4", "icon", b"\x89PNG" + RSA, "der"),
    "base64 DER in bytes": ("U4", "icon", base64.b64encode(RSA), "base64"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_form_of_an_unarmoured_key_is_named(case: str) -> None:
    kind, field, value, form = CASES[case]
    record = example(kind)
    record[field] = value
    message = f"{field}: holds private key material ({form})"
    with pytest.raises(ValidationError) as caught:
        validate(kind, record)
    assert (caught.value.reason, caught.value.path, str(caught.value)) == (
        "private_key_material", field, message)
    verdict = check_message(REGISTRY, REGISTRY.codec.encode(kind, record),
                            REGISTRY.key(kind, record), None)
    assert isinstance(verdict, Refused)
    assert (verdict.reason, verdict.path, verdict.error) == ("private_key_material", field,
                                                             message)
