"""The declaration of who may do what (mdmbus/identities.py) is consistent with itself and with
the topic catalogue: no ACL or grant names an identity, topic, table or database that does not
exist, no service gets a right its purpose does not need (the sweeper never reads a record, a
regional identity never reaches another region), and every role granted a table under
row-level security has a policy for what it was granted. tests/integration/test_identities.py
holds the servers to the declaration."""

from __future__ import annotations

from collections import Counter

import pytest

from mdmbus.identities import (ADMIN, SUPER_USERS, Op, Pattern, Resource, TABLES, kafka_acls,
                               kafka_principals, pg_database_privileges, pg_grants, pg_policies,
                               owner_of, pg_roles, pg_sequences, policy_name, principal_of, role_of)
from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, database_kind, region_database
from mdmbus.topics import TopicKind, all_topics, group_name, topic_name

ACLS = kafka_acls()
PRINCIPALS = [p.name for p in kafka_principals()]
TOPIC_NAMES = {name for name, _ in all_topics()}
TRANSIT = {name for name, spec in all_topics() if spec.transit}
LIFECYCLE = topic_name(TopicKind.TENANT_LIFECYCLE)
ROLES = {r.name: r for r in pg_roles()}


def _principal(acl) -> str:
    assert acl.principal.startswith("User:"), acl
    return acl.principal.removeprefix("User:")


def _region_of(principal: str) -> str | None:
    service, _, region = principal.rpartition("-")
    return region if service and region in REGIONS else None


# ================================================================= Kafka

def test_principals_are_unique_and_every_acl_names_one_that_is_not_a_super_user():
    assert len(PRINCIPALS) == len(set(PRINCIPALS)) == 4 * len(REGIONS) + 2
    assert ADMIN in SUPER_USERS and ADMIN in PRINCIPALS
    for acl in ACLS:
        assert _principal(acl) in PRINCIPALS, acl
        assert _principal(acl) not in SUPER_USERS, f"{acl}: a super user needs no ACL"
    assert len(ACLS) == len(set(ACLS)) and ACLS == sorted(ACLS)


def test_topic_acls_name_existing_topics_literally():
    for acl in ACLS:
        if acl.resource == Resource.TOPIC:
            assert acl.pattern == Pattern.LITERAL and acl.name in TOPIC_NAMES, acl
            assert acl.name != "*", acl


def test_group_acls_are_the_pipeline_and_sweeper_prefixes_of_their_region():
    groups = [a for a in ACLS if a.resource == Resource.GROUP]
    assert groups
    for acl in groups:
        region = _region_of(_principal(acl))
        assert acl.pattern == Pattern.PREFIXED and acl.name == f"mdmbus-{region}-", acl
        assert group_name("pipeline", region).startswith(acl.name)
        assert _principal(acl) in (principal_of("pipeline", region),
                                   principal_of("sweeper", region)), acl
        # A prefix never reaches another region's groups.
        assert not any(group_name("pipeline", other).startswith(acl.name)
                       for other in REGIONS if other != region), acl
    assert {a.op for a in groups if _principal(a).startswith("sweeper-")} == {Op.DESCRIBE}


def test_a_regional_principal_reaches_its_region_and_the_lifecycle_topic_only():
    for acl in ACLS:
        region = _region_of(_principal(acl))
        if acl.resource != Resource.TOPIC:
            continue
        if region is None:
            assert acl.name == LIFECYCLE, acl
        else:
            assert acl.name == LIFECYCLE or acl.name.startswith(f"mdm.{region}."), acl


@pytest.mark.parametrize("service", ["sweeper", "gateway", "devices"])
def test_only_the_pipeline_reads_or_deletes_records(service):
    for region in REGIONS:
        ops = {a.op for a in ACLS if _principal(a) == principal_of(service, region)
               and a.resource == Resource.TOPIC}
        assert not ops & {Op.READ, Op.DELETE}, f"{service}-{region}: {ops}"
    assert not any(a.op in (Op.READ, Op.DELETE) for a in ACLS if _principal(a) == "accounts")


def test_the_pipeline_deletes_transit_topics_it_reads_and_nothing_else():
    for region in REGIONS:
        pipeline = principal_of("pipeline", region)
        deleted = {a.name for a in ACLS if _principal(a) == pipeline and a.op == Op.DELETE}
        read = {a.name for a in ACLS if _principal(a) == pipeline and a.op == Op.READ
                and a.resource == Resource.TOPIC}
        assert deleted == {t for t in TRANSIT if t.startswith(f"mdm.{region}.")}
        assert deleted <= read
        assert LIFECYCLE in read and LIFECYCLE not in deleted


def test_no_acl_alters_or_creates_anything():
    assert not [a for a in ACLS if a.op in (Op.CREATE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS)]


def test_nobody_but_the_admin_writes_the_smoke_topic():
    smoke = topic_name(TopicKind.SMOKE)
    assert not [a for a in ACLS if a.name == smoke]


# ================================================================= PostgreSQL

def test_every_grant_names_a_declared_role_table_and_one_of_its_databases():
    for g in [*pg_grants(), *pg_sequences()]:
        assert g.role in ROLES, g
        assert g.database in ROLES[g.role].databases, f"{g}: {g.role} cannot connect there"
    for g in pg_grants():
        assert g.table in TABLES[database_kind(g.database)], g
        assert g.privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"), g
        assert not g.columns or g.privilege in ("SELECT", "INSERT", "UPDATE"), g
    assert not [g for g in pg_grants() if g.role == "PUBLIC"]


def test_roles_connect_where_their_purpose_is_and_only_the_pipeline_stages_rows():
    privileges = pg_database_privileges()
    assert {p for _, _, p in privileges} == {"CONNECT", "TEMPORARY"}
    for database, role, privilege in privileges:
        assert database in ROLES[role].databases
        if privilege == "TEMPORARY":
            assert role.endswith("_pipeline") and database_kind(database) == "region"
    for region in REGIONS:
        for service in ("pipeline", "sweeper", "gateway", "reader"):
            databases = ROLES[role_of(service, region)].databases
            assert region_database(region) in databases
            assert not {region_database(r) for r in REGIONS if r != region} & set(databases)
            assert CM_DATABASE not in databases
    assert ROLES[role_of("cm-connector")].databases == (CM_DATABASE,)
    assert ROLES[role_of("directory-reader")].databases == (DIRECTORY_DATABASE,)


def test_the_sweeper_may_never_read_a_body():
    for region in REGIONS:
        sweeper = role_of("sweeper", region)
        for g in pg_grants():
            if g.role == sweeper and g.privilege == "SELECT":
                if g.table in ("records", "dead_letters"):
                    assert g.columns and "body" not in g.columns, g
                    assert "error" not in g.columns, g  # a refusal's message may quote values
                assert g.table not in ("erasure_receipts",), g


def test_readers_only_read():
    for g in pg_grants():
        if g.role in {role_of("reader", r) for r in REGIONS} | {role_of("directory-reader")}:
            assert g.privilege == "SELECT", g


def test_whoever_inserts_audit_rows_may_number_them_and_nobody_else():
    for region in REGIONS:
        database = region_database(region)
        inserting = {g.role for g in pg_grants() if (g.database, g.table, g.privilege)
                     == (database, "deletion_audit", "INSERT")}
        numbering = {g.role for g in pg_sequences() if g.database == database
                     and g.table == "deletion_audit_id_seq"}
        assert inserting == numbering, region


def test_every_role_granted_a_table_under_row_level_security_has_a_policy_for_it():
    """A table with a policy has row-level security forced: a role granted it without a
    policy of its own would silently see or change no row."""
    policies = pg_policies()
    secured = {(p.database, p.table) for p in policies}
    for g in pg_grants():
        if (g.database, g.table) not in secured:
            continue
        commands = {p.command for p in policies
                    if (p.database, p.table, p.role) == (g.database, g.table, g.role)}
        assert "ALL" in commands or g.privilege in commands, \
            f"{g.role} holds {g.privilege} on {g.database}.{g.table} without a policy for it"
        if g.privilege in ("UPDATE", "DELETE"):
            # Their WHERE clauses read rows: the role must see them too.
            assert commands & {"ALL", "SELECT"}, f"{g}: can change rows it cannot see"
    for p in policies:
        if p.role == owner_of(p.database):  # the tables' owner holds every privilege
            continue
        assert any((g.database, g.table, g.role) == (p.database, p.table, p.role)
                   for g in pg_grants()), f"policy {p} for a role without a grant there"


def test_policy_names_are_unique_per_table_and_fit_postgresqls_limit():
    names = Counter((p.database, p.table, policy_name(p)) for p in pg_policies())
    assert max(names.values()) == 1
    assert all(len(name) <= 63 for _, _, name in names)


def test_the_gateway_sees_its_callers_tenant_only_and_only_reads_the_directory():
    for region in REGIONS:
        gateway = role_of("gateway", region)
        for p in pg_policies():
            if p.role == gateway:
                assert "current_setting('mdmbus.tenant', true)" in p.using, p
                assert p.check is None or "mdmbus.tenant" in p.check, p
        directory = {g.privilege for g in pg_grants()
                     if g.role == gateway and g.database == DIRECTORY_DATABASE}
        assert directory == {"SELECT"}
