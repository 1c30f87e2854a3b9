"""Minimal valid records of every mdmbus kind, built from the schemas (for tests)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mdmbus.contract import default_registry

__all__ = ["TENANT", "DEVICE", "USER", "RECORD_ID", "KEYS", "example", "der", "pem"]

TENANT = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
DEVICE = "d3b07384-d9a0-4c8f-9e1b-2f3a4b5c6d7e"
USER = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
RECORD_ID = "0b9f8a3e-5c1d-4e2f-9a7b-1c2d3e4f5a6b"
KEYS = Path(__file__).resolve().parents[1] / "data" / "keys"


def der(name: str) -> bytes:
    return (KEYS / f"{name}.der").read_bytes()


def pem(label: str, body: bytes) -> bytes:
    import base64
    text = base64.encodebytes(body).decode().replace("\n", "")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN " + label + "-----\n" + "\n".join(lines) + "\n-----END " + label
            + "-----\n").encode()


def _minimal(schema: Any) -> Any:
    if isinstance(schema, list):
        return None if "null" in schema else _minimal(schema[0])
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "uuid":
        return RECORD_ID
    if logical == "timestamp-millis":
        return 1_714_564_800_000
    if kind == "record":
        return {f["name"]: _minimal(f["type"]) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][0]
    if kind in ("array", "map"):
        return [] if kind == "array" else {}
    return {"null": None, "boolean": False, "int": 1, "long": 1, "string": "x",
            "bytes": b"\x01"}[kind]


_OVERRIDES: dict[str, dict[str, Any]] = {
    "U10": {"scep_challenge_encryption_certificate": None},  # filled in by example()
    "R1": {"compliance": {"state": "COMPLIANT", "noncompliant_settings": []}},
    "tenant_onboarded": {"country": "DE"},
    "device_command": {"command": "WIPE"},
    "U7": {"upn": "alice@contoso.com", "user_name": "Alice"},
}


def example(kind: str) -> dict[str, Any]:
    """A fresh, valid record of ``kind`` (codec representation, epoch-millis timestamps)."""
    spec = default_registry().spec(kind)
    record = _minimal(spec.expanded)
    record["envelope"].update(tenant_id=TENANT, device_id=DEVICE, user_id=USER, kind=kind)
    record.update(copy.deepcopy(_OVERRIDES.get(kind, {})))
    if kind == "U10":
        record["scep_challenge_encryption_certificate"] = pem("CERTIFICATE", der("certificate"))
    return record
