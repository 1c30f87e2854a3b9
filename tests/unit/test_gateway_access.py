"""Which role may call which gateway route, written out by hand (the oracle), against the one
place the gateway reads it (services/gateway/access.py): a route opened to one more role fails
here."""

from __future__ import annotations

import itertools

from mdmbus.services.gateway.access import ALLOWED, ROLES, allowed

#: route -> roles, by hand: CM connectors move relay data and upload; admins upload, export and
#: delete; auditors only read; everyone sees the status; the privacy center's reads (what is
#: held, past receipts) are for admins and auditors, never a connector.
TABLE = {
    "upload": {"connector", "admin"},
    "relay_download": {"connector"},
    "relay_ack": {"connector"},
    "export": {"admin", "auditor"},
    "deletion_request": {"admin"},
    "erasure_receipt": {"admin", "auditor"},
    "status": {"connector", "admin", "auditor"},
    "holdings": {"admin", "auditor"},
    "erasure_receipts": {"admin", "auditor"},
}


def test_every_route_and_role_pair_is_the_table() -> None:
    assert set(ROLES) == {"connector", "admin", "auditor"}
    assert set(ALLOWED) == set(TABLE)
    wrong = [(route, role) for route, role in itertools.product(TABLE, [*ROLES, "", "Admin",
                                                                        "superuser"])
             if allowed(route, role) != (role in TABLE[route])]
    assert not wrong
