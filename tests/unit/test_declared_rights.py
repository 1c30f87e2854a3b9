"""The identity declaration (mdmbus/identities.py) grants exactly what the hand-written table
(tests/integration/rights_table.py) says, without a server: a right added to or dropped from
the declaration fails here at once (and in a mutation run, which runs the unit tests); the
integration tests hold the running broker and server to the same table."""

from __future__ import annotations

from mdmbus.identities import kafka_acls, pg_grants, pg_sequences
from tests.integration.rights_table import KAFKA, PG, SEQUENCE_USERS


def test_the_declared_kafka_acls_are_the_table() -> None:
    declared = {(a.principal.removeprefix("User:"), a.resource.name, a.name, a.pattern.name,
                 a.op.name) for a in kafka_acls()}
    assert declared - KAFKA == set(), "declared, not in the table"
    assert KAFKA - declared == set(), "in the table, not declared"


def test_no_gateway_principal_may_write_a_relay_device_or_dead_letter_topic() -> None:
    for a in kafka_acls():
        if a.principal.startswith("User:gateway-") and a.op.name in ("WRITE", "ALL"):
            region = a.principal.removeprefix("User:gateway-")
            assert a.name in (f"mdm.{region}.upload", f"mdm.{region}.deletion.requests"), a


def test_the_declared_postgres_grants_are_the_table() -> None:
    declared: dict = {}
    for g in pg_grants():
        key = (g.database, g.table, g.role, g.privilege)
        assert key not in declared, f"declared twice: {key}"
        declared[key] = tuple(g.columns) or None
    assert {k: v for k, v in declared.items() if PG.get(k, "absent") != v} == {}
    assert {k: v for k, v in PG.items() if declared.get(k, "absent") != v} == {}
    assert {(g.database, g.role) for g in pg_sequences()} == SEQUENCE_USERS
