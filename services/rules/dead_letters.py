"""A refused record's body is data too (docs/design.md section 5): it is kept for operators
for a limited time, redacted of private key material, and goes with its tenant's purge; it is
not kept at all where keeping it would break rule 1 or rule 7
(:func:`mdmbus.services.rules.refusals.keeps_body`). The expired ones are deleted by the
sweeper (services/stores/expiry.py)."""

from __future__ import annotations

import datetime as dt

__all__ = ["dead_letter_deadline"]


def dead_letter_deadline(now: dt.datetime, keep_days: float) -> dt.datetime:
    """When a dead letter stored at ``now`` is deleted."""
    return now + dt.timedelta(days=keep_days)
