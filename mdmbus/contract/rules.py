"""The contract's checks: a record fits its schema exactly, and the content rules hold.

``validate`` runs where records enter the bus (the producer) and where processors read them; a
failure raises a :class:`~mdmbus.contract.errors.ValidationError` whose ``reason`` goes to the
dead letter and to metrics. ``redact`` prepares a refused record for the dead-letter topic.

What is checked beyond Avro types (docs/design.md rule 5, minimisation):

- no field the schema does not have (fastavro would silently drop it; we refuse the record);
- uuid fields hold lower-case canonical uuids (they are Kafka keys; "ABC..." and "abc..." must
  not land on different partitions); timestamps given as datetimes carry a time zone;
- no string or bytes field holds private key material: a PEM private key header, or the DER of
  a private key (PKCS#1, PKCS#8 plain or encrypted, SEC 1, PKCS#12) raw, base64 or hex encoded
  (mdmbus.contract.keys); and none holds a PEM certificate
  except the field marked ``"mdmbus": {"public_key_only": true}`` (U10's SCEP challenge
  encryption certificate), which must be a public key or certificate (PEM or DER);
- fields marked ``"mdmbus": {"opaque": true}`` (encrypted content and keys, binary packages)
  are never inspected: they are opaque by contract, scanning them would be decoding them;
- envelope ids the kind needs are set, envelope.kind is the kind, and per-kind rules
  (U7 e-mail only with a deployed e-mail profile, command arguments, onboarding country).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mdmbus.contract import errors as e
from mdmbus.contract.content import INT_RANGE, check_public_key, flag, scan_text
from mdmbus.contract.generated import generate_decoded_check
from mdmbus.contract.keys import PRIVATE, holds_private_key, public_key_problem
from mdmbus.contract.limits import COUNTRY_CODE, is_canonical_uuid
from mdmbus.contract.registry import Registry, default_registry

__all__ = ["validate", "validate_decoded", "redact", "REDACTED"]

#: What a redacted string (or, UTF-8 encoded, bytes) value is replaced with.
REDACTED = "[redacted: private key material]"



def _check_primitive(kind: str, logical: str | None, value: Any, path: str) -> None:
    if kind == "string":
        if logical == "uuid":
            if isinstance(value, uuid.UUID):
                return
            if not is_canonical_uuid(value):
                raise e.SchemaMismatchError(
                    f"expected a lower-case canonical uuid, got {value!r:.60}", path)
            return
        if not isinstance(value, str):
            raise e.SchemaMismatchError(f"expected a string, got {type(value).__name__}", path)
        scan_text(value, path)
    elif kind in ("int", "long"):
        if logical and logical.startswith("timestamp") and isinstance(value, datetime):
            if value.tzinfo is None:
                raise e.SchemaMismatchError("datetime without a time zone", path)
            return
        low, high = INT_RANGE[kind]
        if type(value) is not int or not low <= value <= high:
            raise e.SchemaMismatchError(f"expected an Avro {kind}, got {value!r:.60}", path)
    elif kind == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise e.SchemaMismatchError(f"expected bytes, got {type(value).__name__}", path)
        scan_text(bytes(value), path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise e.SchemaMismatchError(f"expected a boolean, got {value!r:.60}", path)
    elif kind == "null":
        if value is not None:
            raise e.SchemaMismatchError(f"expected null, got {value!r:.60}", path)
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise e.SchemaMismatchError(f"expected a number, got {value!r:.60}", path)
    else:
        raise e.SchemaMismatchError(f"unsupported schema type {kind!r}", path)


def _check(schema: Any, value: Any, path: str) -> None:
    """Raise the first contract violation in ``value`` against an expanded schema node."""
    if isinstance(schema, str):
        _check_primitive(schema, None, value, path)
        return
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1:
            _check(branches[0], value, path)
            return
        for branch in branches:  # not used by mdmbus schemas; kept for completeness
            try:
                _check(branch, value, path)
                return
            except e.SchemaMismatchError:
                continue
        raise e.SchemaMismatchError(f"matches no branch of the union, got {value!r:.60}", path)
    kind = schema["type"]
    if kind == "record":
        _check_record(schema, value, path)
    elif kind == "enum":
        if value not in schema["symbols"]:
            raise e.SchemaMismatchError(
                f"{value!r:.40} is not one of {', '.join(schema['symbols'])}", path)
    elif kind == "array":
        if not isinstance(value, (list, tuple)):
            raise e.SchemaMismatchError(f"expected an array, got {type(value).__name__}", path)
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{path}[{i}]")
    elif kind == "map":
        if not isinstance(value, Mapping):
            raise e.SchemaMismatchError(f"expected a map, got {type(value).__name__}", path)
        for key, item in value.items():
            if not isinstance(key, str):
                raise e.SchemaMismatchError(f"map key {key!r:.40} is not a string", path)
            scan_text(key, path)
            _check(schema["values"], item, f"{path}[{key!r:.40}]")
    elif kind == "fixed":
        if not isinstance(value, (bytes, bytearray)) or len(value) != schema["size"]:
            raise e.SchemaMismatchError(f"expected {schema['size']} bytes", path)
    else:
        _check_primitive(kind, schema.get("logicalType"), value, path)


def _check_record(schema: Mapping[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise e.SchemaMismatchError(f"expected a record ({schema['name']}), "
                                    f"got {type(value).__name__}", path)
    fields = schema["fields"]
    extra = set(value) - {f["name"] for f in fields}
    if extra:
        raise e.UnknownFieldError(f"fields not in {schema['name']}: {', '.join(sorted(map(str, extra)))}",
                                  path)
    for field in fields:
        name = field["name"]
        where = f"{path}.{name}" if path else name
        if name not in value:
            if "default" in field:
                continue
            raise e.SchemaMismatchError("missing, and the field has no default", where)
        item = value[name]
        if flag(field, "opaque"):
            _check_opaque(field["type"], item, where)
        elif flag(field, "public_key_only"):
            check_public_key(item, where)
        else:
            _check(field["type"], item, where)


def _check_opaque(schema: Any, value: Any, path: str) -> None:
    """Type check only: opaque content is never looked into."""
    branches = schema if isinstance(schema, list) else [schema]
    if value is None and "null" in branches:
        return
    if not isinstance(value, (bytes, bytearray)):
        raise e.SchemaMismatchError(f"opaque field expects bytes, got {type(value).__name__}", path)


# ---------------------------------------------------------------- rules between fields

def _needs(record: Mapping[str, Any], name: str, why: str) -> None:
    if record["envelope"].get(name) is None:
        raise e.MissingIdentifierError(f"must be set: {why}", f"envelope.{name}")


def _one_with(record: Mapping[str, Any], field: str, command: str) -> None:
    given = record.get(field) is not None
    if given != (record.get("command") == command):
        raise e.InvalidValueError(f"set exactly when command is {command}", field)


def _rule_u6(record: Mapping[str, Any]) -> None:
    if record["assignment_type"] == "APP_TO_USER":
        _needs(record, "user_id", "an app is assigned to a user")
    else:
        _needs(record, "device_id", "settings are applied to a device")


def _rule_u7(record: Mapping[str, Any]) -> None:
    if record.get("email") is not None and not record["email_profile_deployed"]:
        raise e.EmailWithoutProfileError(
            "e-mail is only sent for users with an enabled and deployed e-mail profile", "email")


def _rule_r1(record: Mapping[str, Any]) -> None:
    sections = ("inventory", "compliance", "app_installation", "device_status",
                "sideloading_key_assignment")
    if all(record.get(s) is None for s in sections):
        raise e.InvalidValueError(f"at least one of {', '.join(sections)} must be set")


def _rule_r2(record: Mapping[str, Any]) -> None:
    _one_with(record, "new_device_name", "RENAME")
    _one_with(record, "app_id", "APP_REQUEST")


def _rule_r3(record: Mapping[str, Any]) -> None:
    if record["scope"] == "USER":
        _needs(record, "user_id", "the error is about a user")
    elif record["scope"] == "DEVICE":
        _needs(record, "device_id", "the error is about a device")


def _rule_command(record: Mapping[str, Any]) -> None:
    _one_with(record, "new_device_name", "RENAME")


def _rule_onboarded(record: Mapping[str, Any]) -> None:
    if not COUNTRY_CODE.match(record["country"]):
        raise e.InvalidCountryError(
            f"{record['country']!r:.20} is not an ISO 3166-1 alpha-2 code (two upper-case "
            "letters)", "country")


_RULES: Mapping[str, Callable[[Mapping[str, Any]], None]] = {
    "U6": _rule_u6, "U7": _rule_u7, "R1": _rule_r1, "R2": _rule_r2, "R3": _rule_r3,
    "device_command": _rule_command, "tenant_onboarded": _rule_onboarded,
}


def validate(kind: str, record: Any, registry: Registry | None = None) -> None:
    """Raise a ValidationError (with a ``reason`` code) unless ``record`` is a valid ``kind``.

    Accepts records as given to the codec (uuid text, epoch-millis ints or aware datetimes) and
    as the codec returns them (uuid.UUID, datetime).
    """
    registry = registry or default_registry()
    spec = registry.spec(kind)
    _check_record(spec.expanded, record, "")
    _check_relations(kind, sorted(spec.requires), record)


def validate_decoded(kind: str, record: Any, registry: Registry) -> None:
    """:func:`validate` for a record just returned by the codec's decode: the same verdicts,
    without re-checking what decoding guarantees (mdmbus.contract.content)."""
    compiled = registry.decoded_checks.get(kind)
    if compiled is None:  # once per kind: the check and the required ids, in error order
        spec = registry.spec(kind)
        compiled = (generate_decoded_check(spec.expanded, _check, f"check_{kind}") or _nothing,
                    tuple(sorted(spec.requires)))
        registry.decoded_checks[kind] = compiled
    check, requires = compiled
    try:
        check(record)
    except e.ValidationError:
        validate(kind, record, registry)  # the full walk names the field
        raise
    _check_relations(kind, requires, record)


def _nothing(value: Any) -> None:
    return None


def _check_relations(kind: str, requires: Iterable[str], record: Mapping[str, Any]) -> None:
    """Envelope kind, the ids ``requires`` names (checked in that order), per-kind rules."""
    envelope = record["envelope"]
    if envelope["kind"] != kind:
        raise e.KindMismatchError(f"is {envelope['kind']!r:.40}, record produced as {kind!r}",
                                  "envelope.kind")
    for name in requires:
        _needs(record, name, f"{kind} records are about one {name.split('_')[0]}")
    rule = _RULES.get(kind)
    if rule is not None:
        rule(record)


# ---------------------------------------------------------------- redaction

def _redact_value(value: Any, schema: Any) -> Any:
    """Copy ``value``; ``schema`` is its expanded schema node, or None where it does not fit."""
    if isinstance(value, str):
        return REDACTED if holds_private_key(value, fragment=True) else value
    if isinstance(value, (bytes, bytearray)):
        return REDACTED.encode() if holds_private_key(value, fragment=True) else bytes(value)
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        schema = branches[0] if len(branches) == 1 else None
    if isinstance(value, Mapping):
        if isinstance(schema, Mapping) and schema.get("type") == "record":
            fields = {f["name"]: f for f in schema["fields"]}
            return {k: _redact_field(v, fields.get(k)) for k, v in value.items()}
        values = schema.get("values") if isinstance(schema, Mapping) else None
        return {_redact_value(k, None): _redact_value(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = schema.get("items") if isinstance(schema, Mapping) else None
        return [_redact_value(v, items) for v in value]
    return value


def _redact_field(value: Any, field: Mapping[str, Any] | None) -> Any:
    if field is None:
        return _redact_value(value, None)
    if flag(field, "opaque") and isinstance(value, (bytes, bytearray, type(None))):
        return value  # opaque: never looked into (and encrypted, so no key shows through)
    if flag(field, "public_key_only") and isinstance(value, (bytes, bytearray)):
        if public_key_problem(bytes(value)) == PRIVATE or holds_private_key(value, fragment=True):
            return REDACTED.encode()
        return bytes(value)
    return _redact_value(value, field["type"])


def redact(kind: str, record: Any, registry: Registry | None = None) -> Any:
    """A copy of ``record`` with every value holding private key material replaced.

    For dead letters: works on records that do not fit their schema (or of unknown kinds) too,
    scanning every string and bytes value; only fields the schema marks opaque are left as they
    are. Certificates are not secret and are kept.
    """
    registry = registry or default_registry()
    spec = registry.kinds.get(kind) if isinstance(kind, str) else None
    return _redact_value(record, spec.expanded if spec else None)
