"""The identity declaration (mdmbus/identities.py) grants exactly what the hand-written table
(tests/integration/rights_table.py) says, without a server: a right added to or dropped from
the declaration fails here at once (and in a mutation run, which runs the unit tests); the
integration tests hold the running broker and server to the same table."""

from __future__ import annotations

import pytest

from mdmbus import identities
from mdmbus.identities import (Acl, KafkaPrincipal, Op, Pattern, Resource, kafka_acls,
                               kafka_principals, pg_database_privileges, pg_functions,
                               pg_grants, pg_policies, pg_roles, pg_sequences, principal_of,
                               role_of)
from tests.integration.rights_table import (DATABASE_PRIVILEGES, FUNCTIONS, KAFKA, LOGIN_ROLES, PG,
                                            POLICIES, PRINCIPALS, REGION_NAMES, SEQUENCE_USERS)


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


def test_the_declared_function_callers_are_the_table() -> None:
    declared = [(g.database, g.table, g.role, g.privilege) for g in pg_functions()]
    assert set(declared) == FUNCTIONS
    assert declared == sorted(FUNCTIONS), "declared in order, each once"


def test_the_declared_row_level_security_is_the_table() -> None:
    """A WITH CHECK left out is the USING expression (PostgreSQL's rule), so both spellings
    of a policy compare equal; the names are compared too (provisioning replaces a policy by
    its name)."""
    declared = [(p.database, p.table, p.role, p.name, p.command, p.using,
                 p.using if p.check is None else p.check) for p in pg_policies()]
    assert len(declared) == len(set(declared)), "a policy declared twice"
    assert set(declared) - POLICIES == set(), "declared, not in the table"
    assert POLICIES - set(declared) == set(), "in the table, not declared"


def test_the_rights_table_in_docs_names_every_group_a_principal_without_rights_and_calls(
        monkeypatch) -> None:
    """docs/identities.md's generator on rights the current declaration does not have (two
    groups for one operation, a principal with no right, a role calling two functions): the
    test of docs/identities.md only sees the shapes the declaration has today."""
    acls = [Acl("User:p-two", Resource.GROUP, name, Pattern.LITERAL, Op.READ)
            for name in ("g-one", "g-two")]
    monkeypatch.setattr(identities, "kafka_acls", lambda: acls)
    monkeypatch.setattr(identities, "kafka_principals", lambda: [
        KafkaPrincipal("p-two", "two groups"), KafkaPrincipal("p-none", "no right")])
    two = identities.Grant("mdmbus_eu", "second_function", "mdmbus_eu_gateway", "EXECUTE")
    monkeypatch.setattr(identities, "pg_functions",
                        lambda: sorted([*pg_functions(), two]))
    lines = identities.markdown().splitlines()
    assert "| `p-two` | two groups | READ group `g-one`, `g-two` |" in lines
    assert "| `p-none` | no right | nothing |" in lines
    gateway = next(line for line in lines if line.startswith("| `mdmbus_eu_gateway`"))
    assert "EXECUTE `acknowledge_relay()`, EXECUTE `second_function()`" in gateway


def test_the_declared_login_roles_are_the_table() -> None:
    declared = {}
    for role in pg_roles():
        assert role.name not in declared, f"declared twice: {role.name}"
        assert len(set(role.databases)) == len(role.databases), role
        declared[role.name] = (frozenset(role.databases), role.login)
    assert {k: v for k, v in declared.items() if LOGIN_ROLES.get(k) != v} == {}, \
        "declared, not in the table (or otherwise)"
    assert {k: v for k, v in LOGIN_ROLES.items() if declared.get(k) != v} == {}, \
        "in the table, not declared (or otherwise)"
    assert all(role.purpose for role in pg_roles())


def test_the_declared_database_privileges_are_the_table() -> None:
    declared = pg_database_privileges()
    assert len(declared) == len(set(declared)), "declared twice"
    assert set(declared) == DATABASE_PRIVILEGES


def test_each_service_has_the_principal_and_role_of_the_table() -> None:
    assert {key: principal_of(*key) for key in PRINCIPALS} == PRINCIPALS
    assert {p.name for p in kafka_principals()} == set(PRINCIPALS.values())
    roles = {(service, r): role_of(service, r) for service in ("pipeline", "sweeper", "gateway",
                                                               "reader") for r in REGION_NAMES}
    roles |= {(service, None): role_of(service) for service in ("cm-connector",
                                                                 "directory-reader")}
    assert set(roles.values()) == set(LOGIN_ROLES)
    assert roles[("gateway", "eu")] == "mdmbus_eu_gateway"
    assert roles[("cm-connector", None)] == "mdmbus_cm_connector"


@pytest.mark.parametrize("call, message", [
    (lambda: principal_of("pipeline"), "pipeline has a principal per region, not None"),
    (lambda: principal_of("gateway", "mars"), "gateway has a principal per region, not 'mars'"),
    (lambda: principal_of("cm"), "no Kafka principal for 'cm'"),
    (lambda: principal_of("Accounts"), "no Kafka principal for 'Accounts'"),
    (lambda: principal_of("reader", "eu"), "no Kafka principal for 'reader'"),
    (lambda: role_of("sweeper"), "sweeper has a role per region, not None"),
    (lambda: role_of("gateway", "mars"), "gateway has a role per region, not 'mars'"),
])
def test_a_service_without_an_identity_is_told_so(call, message) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message
