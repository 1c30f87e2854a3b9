"""Which role may call which gateway route, and which tenant a region's gateway serves, written
out by hand (the oracle), against the one place the gateway reads them
(services/gateway/access.py): a route opened to one more role, or a tenant served by another
region's gateway, fails here."""

from __future__ import annotations

import itertools
import uuid

from mdmbus.services.gateway.access import ALLOWED, ROLES, allowed, tenant_refusal
from mdmbus.services.stores.directory import Entry

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


#: (tenant's region, its state, purged_ok) -> the answer of the EU gateway, by hand: a tenant
#: is served only by its own region's gateway, and not at all once its data is deleted,
#: except on the routes that report on the deletion itself.
REGION_TABLE = {
    ("eu", "active", False): None,
    ("eu", "retention", False): None,
    ("eu", "purged", False): "tenant_deleted",
    ("eu", "purged", True): None,
    ("eu", "active", True): None,
    ("na", "active", False): "wrong_region",
    ("na", "purged", True): "wrong_region",
    ("ap", "retention", False): "wrong_region",
}


def test_a_tenant_is_served_by_its_own_region_only() -> None:
    def entry(region: str, state: str) -> Entry:
        return Entry(uuid.uuid4(), region, "DE" if region == "eu" else "US", state)
    answers = {key: tenant_refusal(entry(key[0], key[1]), "eu", purged_ok=key[2])
               for key in REGION_TABLE}
    assert answers == REGION_TABLE
    assert tenant_refusal(None, "eu") == "tenant_not_onboarded"
    assert tenant_refusal(None, "eu", purged_ok=True) == "tenant_not_onboarded"
    # the default: a purged tenant is refused
    assert tenant_refusal(entry("eu", "purged"), "eu") == "tenant_deleted"
