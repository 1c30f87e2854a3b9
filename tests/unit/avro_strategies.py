"""Hypothesis strategies that generate records for any (expanded) mdmbus schema.

Records use the representation both fastavro and the Apache ``avro`` package write: uuids as
text, timestamps as UTC datetimes at millisecond precision, bytes as bytes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st

__all__ = ["records"]

_TIMESTAMPS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1),
                           timezones=st.just(timezone.utc)).map(
    lambda d: d.replace(microsecond=d.microsecond - d.microsecond % 1000))
_TEXT = st.text(max_size=12)


def records(schema: Any) -> st.SearchStrategy[Any]:
    """Values of an expanded schema node (see mdmbus.contract.registry.expand_references)."""
    if isinstance(schema, list):
        return st.one_of(*(records(branch) for branch in schema))
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "uuid":
        return st.uuids().map(str)
    if logical == "timestamp-millis":
        return _TIMESTAMPS
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: records(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(records(schema["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(_TEXT, records(schema["values"]), max_size=3)
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(1 << 31), (1 << 31) - 1),
        "long": st.integers(-(1 << 63), (1 << 63) - 1),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": _TEXT,
        "bytes": st.binary(max_size=24),
    }[kind]


def make_valid(kind: str, record: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Mends a generated ``record`` so that it meets the rules between fields of its kind
    (mdmbus.contract.rules), so that generated records of every kind can be accepted."""
    from tests.unit.examples import DEVICE, USER, der, pem
    env = record["envelope"]
    env["kind"] = kind
    for name in spec.requires | {"device_id", "user_id"} & ({"device_id", "user_id"}
                                                             if kind in ("U6", "R3") else set()):
        if env.get(name) is None:
            env[name] = DEVICE if name == "device_id" else USER
    if kind == "U7" and record.get("email") is not None:
        record["email_profile_deployed"] = True
    if kind == "R1" and all(record.get(s) is None for s in (
            "inventory", "compliance", "app_installation", "device_status",
            "sideloading_key_assignment")):
        record["compliance"] = {"state": "COMPLIANT", "noncompliant_settings": []}
    if kind in ("R2", "device_command"):
        record["new_device_name"] = "phone" if record["command"] == "RENAME" else None
    if kind == "R2":
        record["app_id"] = DEVICE if record["command"] == "APP_REQUEST" else None
    if kind == "U10":
        record["scep_challenge_encryption_certificate"] = pem("CERTIFICATE", der("certificate"))
    if kind == "tenant_onboarded":
        record["country"] = "DE"
    return record


def text_places(schema: Any, value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every str or bytes value of ``value`` the content rules scan (not opaque, not
    U10's public-key field, not uuids), map keys included as ("key", path-to-map, key)."""
    from mdmbus.contract.content import flag
    if isinstance(schema, list):
        if value is None:
            return []
        branches = [b for b in schema if b != "null"]
        return text_places(branches[0], value, path) if len(branches) == 1 else []
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if kind in ("string", "bytes"):
        return [] if logical == "uuid" else [path]
    if kind == "record":
        out = []
        for field in schema["fields"]:
            if flag(field, "opaque") or flag(field, "public_key_only"):
                continue
            out += text_places(field["type"], value[field["name"]], path + (field["name"],))
        return out
    if kind == "array":
        return [p for i, v in enumerate(value) for p in text_places(schema["items"], v, path + (i,))]
    if kind == "map":
        return [("key", path, k) for k in value] + [
            p for k, v in value.items() for p in text_places(schema["values"], v, path + (k,))]
    return []


def plant(record: dict[str, Any], place: tuple, text: str) -> None:
    """Puts ``text`` (as str, or UTF-8 bytes where the value is bytes) at ``place``."""
    if place and place[0] == "key":
        _, path, key = place
        target = record
        for step in path:
            target = target[step]
        target[text] = target.pop(key)
        return
    target = record
    for step in place[:-1]:
        target = target[step]
    old = target[place[-1]]
    target[place[-1]] = text.encode() if isinstance(old, (bytes, bytearray)) else text
