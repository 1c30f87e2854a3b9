"""Properties of the declaration in mdmbus/identities.py that must hold whatever is added to
it: regions stay apart, the sweeper never reaches a body, row-level security leaves no granted
role blind, and each process's consumer groups fall under its own prefix."""

from mdmbus.identities import (Op, Resource, kafka_acls, kafka_principals, pg_grants,
                               pg_policies, pg_roles, principal_of, role_of)
from mdmbus.regions import DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.streams.app import lifecycle_app_id
from mdmbus.topics import TopicKind, all_topics, group_name, parse_topic, topic_name

LIFECYCLE = topic_name(TopicKind.TENANT_LIFECYCLE)


def test_a_regional_principal_names_only_its_regions_topics_and_groups():
    for acl in kafka_acls():
        name = acl.principal.removeprefix("User:")
        region = name.rsplit("-", 1)[-1]
        if region not in REGIONS:
            continue
        if acl.resource == Resource.TOPIC and acl.name != LIFECYCLE:
            assert parse_topic(acl.name)[1] == region, acl
        if acl.resource == Resource.GROUP:
            assert acl.name == f"mdmbus-{region}-", acl


def test_only_the_regions_pipeline_reads_or_deletes_its_records():
    for acl in kafka_acls():
        if acl.resource != Resource.TOPIC or acl.op not in (Op.READ, Op.DELETE):
            continue
        spec, region = parse_topic(acl.name)
        if acl.name == LIFECYCLE:
            assert acl.op == Op.READ and acl.principal.startswith("User:pipeline-"), acl
        else:
            assert acl.principal == f"User:{principal_of('pipeline', region)}", acl


def test_nothing_may_read_a_dead_letter_topic_but_the_super_user():
    for acl in kafka_acls():
        if acl.resource == Resource.TOPIC and parse_topic(acl.name)[0].kind == TopicKind.DEAD_LETTER:
            assert acl.op in (Op.WRITE, Op.DESCRIBE), acl


def test_the_pipelines_groups_fall_under_its_prefix():
    for region in REGIONS:
        prefix = f"mdmbus-{region}-"
        assert group_name("pipeline", region).startswith(prefix)
        # the lifecycle agent's group, when the process serves this region first
        others = [r for r in REGIONS if r != region]
        assert lifecycle_app_id((region, *others)).startswith(prefix)
        assert lifecycle_app_id((region,)).startswith(prefix)


def test_every_topic_has_a_writer_and_every_record_topic_a_reader():
    writers = {a.name for a in kafka_acls() if a.op == Op.WRITE}
    readers = {a.name for a in kafka_acls() if a.op == Op.READ}
    for name, spec in all_topics():
        if spec.kind == TopicKind.SMOKE:
            continue
        assert name in writers, name
        if spec.kind != TopicKind.DEAD_LETTER:
            assert name in readers, name


def test_the_sweeper_never_reaches_a_body():
    for grant in pg_grants():
        if "_sweeper" in grant.role and grant.table in ("records", "dead_letters") \
                and grant.privilege in ("SELECT", "UPDATE", "INSERT"):
            assert grant.columns and "body" not in grant.columns, grant


def test_a_role_granted_a_table_with_policies_has_a_policy_there():
    with_policies = {(p.database, p.table) for p in pg_policies()}
    covered = {(p.database, p.table, p.role) for p in pg_policies()}
    for grant in pg_grants():
        if (grant.database, grant.table) in with_policies:
            assert (grant.database, grant.table, grant.role) in covered, grant


def test_the_gateway_sees_only_its_callers_tenant():
    for policy in pg_policies():
        if policy.role.endswith("_gateway"):
            assert "current_setting('mdmbus.tenant'" in policy.using, policy


def test_a_regions_roles_reach_only_its_store_and_the_directory():
    for role in pg_roles():
        for region in REGIONS:
            if role.name.startswith(f"mdmbus_{region}_"):
                assert set(role.databases) <= {region_database(region), DIRECTORY_DATABASE}, role
    for grant in pg_grants():
        for region in REGIONS:
            if grant.role.startswith(f"mdmbus_{region}_"):
                assert grant.database in (region_database(region), DIRECTORY_DATABASE), grant


def test_every_regional_service_has_a_principal_and_a_role():
    names = {p.name for p in kafka_principals()}
    roles = {r.name for r in pg_roles()}
    for region in REGIONS:
        for service in ("pipeline", "sweeper", "gateway"):
            assert principal_of(service, region) in names
            assert role_of(service, region) in roles
