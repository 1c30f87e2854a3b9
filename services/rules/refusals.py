"""The reasons the rules refuse a record the contract accepted, and what a refusal keeps.

The contract's own reasons (size, encoding, content, topic, key) are in
:mod:`mdmbus.contract.verdict`; these are the rules' (docs/design.md section 2). Every reason is
a bounded metric label and the ``reason`` of a dead letter.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Refusal", "keeps_body", "message"]


class Refusal(StrEnum):
    #: Rule 1: the record's tenant is not in the directory (after a short wait for its
    #: onboarding, which travels on another topic).
    TENANT_NOT_ONBOARDED = "tenant_not_onboarded"
    #: Rule 1: the tenant lives in another region; the record is not kept in this one.
    WRONG_REGION = "wrong_region"
    #: Rule 1: an onboarding country the region table does not list.
    UNKNOWN_COUNTRY = "unknown_country"
    #: Rule 1: an onboarding of a tenant already onboarded in another region (tenants never
    #: move).
    ALREADY_ONBOARDED = "already_onboarded"
    #: Rule 4: the tenant is in its read-only retention period.
    TENANT_IN_RETENTION = "tenant_in_retention"
    #: Rule 7: the tenant's data was deleted; nothing of it is written again.
    TENANT_DELETED = "tenant_deleted"
    #: Rule 8: a lifecycle event on a topic whose writer may not send it: a region's
    #: deletion-request topic carries deletion requests only (onboarding, subscription ends and
    #: cancellations come from the account service, on the lifecycle topic).
    NOT_A_DELETION_REQUEST = "not_a_deletion_request"
    #: A fault of the processor on one record, isolated so its neighbours are stored.
    PROCESSING_ERROR = "processing_error"


_MESSAGES = {
    Refusal.TENANT_NOT_ONBOARDED: "tenant has not been onboarded in any region",
    Refusal.WRONG_REGION: "the tenant's data lives in another region; not kept here",
    Refusal.UNKNOWN_COUNTRY: "onboarding country is not in the region table",
    Refusal.ALREADY_ONBOARDED: "tenant is already onboarded in another region; tenants never "
                               "move",
    Refusal.TENANT_IN_RETENTION: "tenant is in its read-only retention period: no new writes",
    Refusal.TENANT_DELETED: "the tenant's data was deleted: nothing of it is written again",
    Refusal.NOT_A_DELETION_REQUEST: "a region's deletion-request topic carries deletion "
                                    "requests only; other lifecycle events come from the "
                                    "account service",
    Refusal.PROCESSING_ERROR: "the processor failed on this record",
}


def message(reason: Refusal) -> str:
    """What a refusal says, in words (no values of the record)."""
    return _MESSAGES[reason]


def keeps_body(reason: str) -> bool:
    """Whether a dead letter for ``reason`` keeps the record's body in the region store: not
    for a deleted tenant (rule 7) and not in a region the tenant does not live in (rule 1)."""
    return reason not in (Refusal.TENANT_DELETED, Refusal.WRONG_REGION)
