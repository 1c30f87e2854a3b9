"""Errors of the data contract: a bad schema directory, and records that break the contract.

Each :class:`ValidationError` subclass has a fixed ``reason`` code: a short, bounded string fit
for a metric label and a dead-letter header. The message says what exactly was wrong.
"""

from __future__ import annotations

from mdmbus.errors import MdmbusError

__all__ = [
    "ContractError", "ValidationError", "UnknownKindError", "SchemaMismatchError",
    "UnknownFieldError", "KindMismatchError", "MissingIdentifierError",
    "PrivateKeyMaterialError", "CertificateBodyError", "NotPublicKeyError",
    "EmailWithoutProfileError", "InvalidCountryError", "InvalidValueError", "RecordTooLargeError",
    "REASONS",
]


class ContractError(MdmbusError):
    """The schema directory itself is inconsistent (a developer error, found at load)."""


class ValidationError(MdmbusError):
    """A record breaks the contract; ``reason`` is a bounded code, the message the detail."""

    reason = "invalid"

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        #: Dotted path of the offending field ("" for the whole record).
        self.path = path


class UnknownKindError(ValidationError):
    """No schema exists for the kind named."""
    reason = "unknown_kind"


class SchemaMismatchError(ValidationError):
    """A value has the wrong type, is missing, or is out of range for its Avro type."""
    reason = "schema_mismatch"


class UnknownFieldError(ValidationError):
    """Minimisation: the record carries a field its schema does not have."""
    reason = "unknown_field"


class KindMismatchError(ValidationError):
    """envelope.kind differs from the kind the record is produced or validated as."""
    reason = "kind_mismatch"


class MissingIdentifierError(ValidationError):
    """An envelope id this kind needs (device_id, user_id) is null."""
    reason = "missing_identifier"


class PrivateKeyMaterialError(ValidationError):
    """Minimisation: a field holds private key material."""
    reason = "private_key_material"


class CertificateBodyError(ValidationError):
    """Minimisation: a certificate body where none may be (only U10's public-key field may)."""
    reason = "certificate_body"


class NotPublicKeyError(ValidationError):
    """The public-key-only field holds something that is neither a public key nor a certificate."""
    reason = "not_public_key"


class EmailWithoutProfileError(ValidationError):
    """U7: an e-mail address for a user without an enabled and deployed e-mail profile."""
    reason = "email_without_profile"


class InvalidCountryError(ValidationError):
    """Onboarding country is not an ISO 3166-1 alpha-2 code."""
    reason = "invalid_country"


class RecordTooLargeError(ValidationError):
    """The encoded record is over the contract's size limit (mdmbus.contract.limits)."""
    reason = "oversized"


class InvalidValueError(ValidationError):
    """A value is well typed but breaks a rule between fields (e.g. RENAME without a name)."""
    reason = "invalid_value"


#: Every reason code a ValidationError can carry.
REASONS: frozenset[str] = frozenset(
    cls.reason for cls in (
        UnknownKindError, SchemaMismatchError, UnknownFieldError, KindMismatchError,
        MissingIdentifierError, PrivateKeyMaterialError, CertificateBodyError, NotPublicKeyError,
        EmailWithoutProfileError, InvalidCountryError, InvalidValueError, RecordTooLargeError,
    )
)
