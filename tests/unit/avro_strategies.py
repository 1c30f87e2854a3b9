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
