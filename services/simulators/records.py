"""Plausible, valid records of every kind, built from the schemas, for simulators and tests.

Values are drawn from a seeded random generator so a workload can be replayed; the content
rules of the contract (e.g. command arguments, R1 sections) are met by the overrides below.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from typing import Any, Mapping

from mdmbus.contract import Registry, default_registry

__all__ = ["RecordFactory", "UPLOAD_KINDS", "RELAY_KINDS"]

UPLOAD_KINDS = tuple(f"U{i}" for i in range(1, 15))
RELAY_KINDS = tuple(f"R{i}" for i in range(1, 7))

# A P-256 public key (SubjectPublicKeyInfo, DER): what U10 carries. Public by definition.
_PUBLIC_KEY = base64.b64decode(
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2hTRBvMWKdCo+fZbkIZ/HXEGCiJOCUJGx2V7R4ukT2X7H2hAsi7h"
    "C5R0kktcGkQbNthQB4YB6bdTGsIcCjnSiQ==")

_OVERRIDES: Mapping[str, Mapping[str, Any]] = {
    "U7": {"upn": "user@contoso.com", "user_name": "Contoso User", "email": None},
    "U10": {"scep_challenge_encryption_certificate": _PUBLIC_KEY},
    "U12": {"build_version": "5.0.7958.1000"},
    "tenant_onboarded": {"country": "US"},
    "R1": {"compliance": {"state": "COMPLIANT", "noncompliant_settings": []}},
    "R2": {"command": "WIPE", "new_device_name": None, "app_id": None},
    "device_command": {"command": "WIPE", "new_device_name": None},
}


class RecordFactory:
    def __init__(self, seed: int = 0, registry: Registry | None = None) -> None:
        self.random = random.Random(seed)
        self.registry = registry or default_registry()

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def _value(self, schema: Any, name: str) -> Any:
        r = self.random
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            if "null" in schema and r.random() < 0.3:
                return None
            return self._value(branches[0], name)
        kind = schema if isinstance(schema, str) else schema["type"]
        logical = None if isinstance(schema, str) else schema.get("logicalType")
        if logical == "uuid":
            return self.uuid()
        if logical == "timestamp-millis":
            return 1_764_000_000_000 + r.randrange(10**9)
        if kind == "record":
            return {f["name"]: self._value(f["type"], f["name"]) for f in schema["fields"]}
        if kind == "enum":
            return r.choice(schema["symbols"])
        if kind == "array":
            return [self._value(schema["items"], name) for _ in range(r.randrange(3))]
        if kind == "map":
            return {f"k{i}": self._value(schema["values"], name) for i in range(r.randrange(3))}
        if kind == "string":
            return "".join(r.choices(string.ascii_lowercase, k=r.randrange(4, 16)))
        if kind == "bytes":
            return r.randbytes(r.randrange(8, 64))
        if kind == "boolean":
            return r.random() < 0.5
        if kind in ("int", "long"):
            return r.randrange(1, 1000)
        if kind in ("float", "double"):
            return r.random() * 100
        return None

    def make(self, kind: str, tenant_id: str, event_time_ms: int, device_id: str | None = None,
             user_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """A valid ``kind`` record; ``fields`` override generated values."""
        spec = self.registry.spec(kind)
        record = self._value(spec.expanded, kind)
        record["envelope"] = {"record_id": self.uuid(), "tenant_id": tenant_id,
                              "device_id": device_id, "user_id": user_id,
                              "event_time": event_time_ms, "kind": kind}
        if kind in ("U6", "R3"):
            record["envelope"]["device_id"] = device_id or self.uuid()
            record["envelope"]["user_id"] = user_id or self.uuid()
        for name in spec.requires:
            if record["envelope"][name] is None:
                record["envelope"][name] = self.uuid()
        record.update(_OVERRIDES.get(kind, {}))
        record.update(fields)
        return record
