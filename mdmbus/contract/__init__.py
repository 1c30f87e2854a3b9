"""The data contract: the Avro schemas of every record mdmbus carries, and the rules they keep.

Public surface:

- :func:`default_registry` / :func:`load_registry`: kind -> schema, topic, key; the codec;
- :func:`validate`: schema fit plus content rules, raising a :class:`ValidationError` with a
  bounded ``reason`` code; :func:`validate_decoded`, the same verdicts for a record the codec
  just decoded, cheaper; :func:`redact` for dead letters;
- :func:`from_json` / :func:`to_json`: the JSON form of records;
- :func:`incompatibilities` / :func:`check_released`: schema evolution checks.
"""

from mdmbus.contract.compat import Incompatibility, check_released, incompatibilities
from mdmbus.contract.errors import REASONS, ContractError, ValidationError
from mdmbus.contract.jsonform import from_json, to_json
from mdmbus.contract.registry import (SCHEMA_DIR, KindSpec, Registry, default_registry,
                                      load_registry)
from mdmbus.contract.rules import REDACTED, redact, validate, validate_decoded

__all__ = [
    "SCHEMA_DIR", "KindSpec", "Registry", "default_registry", "load_registry",
    "validate", "validate_decoded", "redact", "REDACTED", "from_json", "to_json",
    "Incompatibility", "incompatibilities", "check_released",
    "ContractError", "ValidationError", "REASONS",
]
