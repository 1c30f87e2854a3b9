"""Where each privacy rule of docs/design.md section 2 is enforced, and which tests prove it: the
one list a newcomer reads to answer "where is rule N enforced?". The README's table of the same
name is generated from it (``python -m mdmbus.services.rules.enforcement``), and
tests/unit/test_enforcement_map.py checks that every function and test named here exists and that
the README shows this list.

An entry names a function (``module:qualified.name``), or a file where the rule is data or SQL
(a schema, a table, a SQL function), with what it does for the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Point", "RULES", "POINTS", "PROOFS", "markdown_table"]


@dataclass(frozen=True)
class Point:
    """One place a rule is enforced: ``where`` is ``package.module:qualname`` or a repository
    path (a file that is data or SQL)."""

    rule: int
    where: str
    does: str


RULES = {1: "residency", 2: "delete after download", 3: "session expiry",
         4: "retention, deletion on request", 5: "minimisation", 6: "deletion is real",
         7: "deletion is final", 8: "isolation"}

_P = Point
POINTS: tuple[Point, ...] = (
    _P(1, "mdmbus.services.rules.residency:onboard", "a tenant's region, set once from its country"),
    _P(1, "mdmbus/data/country_regions.csv", "country -> region"),
    _P(1, "mdmbus.topics:topic_name", "one set of topics a region"),
    _P(1, "mdmbus.streams.batch:residency_route",
       "the pipeline refuses a record of another region's tenant"),
    _P(1, "mdmbus.services.gateway.app:Gateway.entry",
       "the gateway answers 421 with the tenant's region, 403 for a tenant not onboarded"),
    _P(2, "mdmbus.services.rules.delete_after_download:acknowledge",
       "an acknowledgement deletes the cloud copy"),
    _P(2, "services/stores/region_functions.sql",
       "acknowledge_relay: body, wrapped key and KEK id nulled in the acknowledging transaction"),
    _P(2, "mdmbus.services.connector.connector:TenantConnector.once",
       "acknowledges only after CM's commit"),
    _P(3, "mdmbus.services.rules.session_expiry:command_deadline_sql",
       "a command's deadline: its session's expiry + grace (one SQL definition)"),
    _P(3, "mdmbus.services.rules.session_expiry:apply_session_events",
       "a session's end or expiry moves its commands' deadlines"),
    _P(3, "mdmbus.services.stores.records:write_records",
       "a command's deadline from its session at write time; one already past is not stored"),
    _P(3, "mdmbus.services.stores.expiry:sweep_deadlines", "deletes rows past their deadline"),
    _P(3, "mdmbus.services.sweeper:Sweeper.sweep_once", "runs the deadline sweep"),
    _P(4, "mdmbus.services.rules.retention:end_subscription", "read-only for 90 days"),
    _P(4, "mdmbus.services.rules.retention:sweep_due_purges", "purged 30 days later"),
    _P(4, "mdmbus.services.rules.retention:delete_on_request", "deletion on request, at once"),
    _P(4, "mdmbus.services.stores.records:write_records",
       "the store refuses writes of a tenant not active, in the writing transaction"),
    _P(4, "mdmbus.streams.deletion_requests:deletion_requests_processor",
       "the region's pipeline applies a deletion request"),
    _P(5, "schemas/avro/", "the fields a record may carry"),
    _P(5, "mdmbus.contract.verdict:check_message",
       "one verdict for one record, producer and pipeline alike"),
    _P(5, "mdmbus.contract.keys:holds_private_key", "private keys, armoured or not, refused"),
    _P(5, "mdmbus.contract.retention:keep", "what a dead letter may keep of a refused message"),
    _P(6, "mdmbus.services.rules.audit:audit", "every delete audited and counted"),
    _P(6, "mdmbus.streams.transit:Truncator.truncate",
       "a stored record's Kafka copy truncated within seconds"),
    _P(6, "mdmbus.streams.transit:Truncator.roll_idle", "idle segments rolled, then removed"),
    _P(6, "mdmbus.services.rules.dead_letters:dead_letter_deadline", "dead letters expire"),
    _P(6, "services/stores/region_crypto.sql",
       "every body sealed under its own data key: destroyed keys make every copy unreadable"),
    _P(7, "mdmbus.services.stores.records:write_records",
       "a purged tenant's tombstone refuses its data"),
    _P(7, "mdmbus.services.rules.residency:onboard",
       "a purged tenant's tombstone refuses its onboarding"),
    _P(7, "mdmbus.services.stores.dead_letters:insert",
       "a purged tenant's dead letter keeps no body"),
    _P(8, "mdmbus.identities:kafka_acls", "who may do what on Kafka (declared)"),
    _P(8, "mdmbus.identities:pg_grants", "who may do what in PostgreSQL (declared)"),
    _P(8, "mdmbus.identities:pg_policies", "row-level security: the gateway sees one tenant"),
    _P(8, "mdmbus.stack.pg_identities:sync", "PostgreSQL roles and rights provisioned"),
    _P(8, "mdmbus.stack.kafka_admin:AclAdmin.sync_acls", "Kafka ACLs provisioned"),
    _P(8, "mdmbus.connections:kafka_options", "every Kafka connection's identity"),
    _P(8, "mdmbus.services.gateway.tokens:TokenVerifier.verify", "tokens: signature, lifetime"),
    _P(8, "mdmbus.services.gateway.app:Gateway.caller",
       "the token's role may call the route (403); one tenant's slots (429)"),
    _P(8, "mdmbus.services.stores.pools:hold_to_tenant",
       "a gateway connection held to its caller's tenant"),
    _P(8, "mdmbus.services.gateway.guards:ConnectionGuard",
       "no client degrades another: connection caps overall and per source address, new "
       "connections a second per source address (refused before TLS), header deadline"),
    _P(8, "mdmbus.services.gateway.listener:Listener",
       "a refused connection closed as it is accepted, before any transport or TLS"),
    _P(8, "mdmbus.services.gateway.guards:bounded_acquire", "bounded waits for a store (503)"),
    _P(8, "mdmbus.streams.deletion_requests:deletion_requests_processor",
       "a region's deletion requests, for its own tenants only"),
)

#: rule -> the tests that prove it (``path::name``, or a whole file).
PROOFS: dict[int, tuple[str, ...]] = {
    1: ("tests/integration/test_pipeline_rules.py::"
        "test_residency_each_tenants_rows_live_only_in_its_region",
        "tests/unit/test_rule_logic.py", "tests/unit/test_country_regions.py"),
    2: ("tests/integration/test_cm_connector.py::test_acknowledgement_only_after_the_cm_commit",
        "tests/integration/test_cm_connector.py::"
        "test_kill_9_between_cm_commit_and_ack_many_times_under_load",
        "tests/integration/test_acknowledgement.py"),
    3: ("tests/integration/test_pipeline_rules.py::"
        "test_session_commands_are_deleted_at_session_expiry",
        "tests/integration/test_command_deadline.py"),
    4: ("tests/integration/test_pipeline_rules.py::test_retention_lifecycle_read_only_then_purged",
        "tests/integration/test_pipeline_rules.py::"
        "test_a_deletion_request_deletes_at_once_with_an_erasure_receipt"),
    5: ("tests/unit/test_rules.py", "tests/unit/test_verdicts.py",
        "tests/unit/test_key_in_every_field.py", "tests/unit/test_dead_letter_body.py",
        "tests/integration/test_keys_stored_nowhere.py"),
    6: ("tests/integration/test_deletion.py", "tests/integration/test_transit.py",
        "tests/integration/test_erasure.py::"
        "test_deleted_rows_are_unreadable_in_every_copy_after_a_kek_rotation"),
    7: ("tests/integration/test_deletion.py::"
        "test_a_purged_tenant_stays_purged_when_every_topic_is_replayed",),
    8: ("tests/integration/test_identities.py", "tests/integration/test_gateway.py",
        "tests/integration/test_gateway_isolation.py", "tests/integration/test_gateway_door.py",
        "tests/unit/test_gateway_listener.py", "tests/integration/test_tenant_isolation.py",
        "tests/integration/test_gateway_tenant_channels.py",
        "tests/unit/test_gateway_tokens.py", "tests/integration/test_pg_privileges.py",
        "tests/integration/test_data_at_rest.py"),
}


def _where(point: Point) -> str:
    if ":" not in point.where:
        return f"`{point.where}`"
    module, name = point.where.split(":")
    parts = module.split(".")
    if parts[:2] in (["mdmbus", "services"], ["mdmbus", "streams"]):
        parts = parts[1:]
    return f"`{'/'.join(parts)}.py` `{name}`"


def markdown_table() -> str:
    """The README's "Where each rule is enforced" table."""
    lines = ["| rule ([docs/design.md](docs/design.md) section 2) | enforced in | proven by |",
             "|---|---|---|"]
    for rule, name in RULES.items():
        points = "; ".join(f"{_where(p)}: {p.does}" for p in POINTS if p.rule == rule)
        proofs = ", ".join(f"`{t}`" for t in PROOFS[rule])
        lines.append(f"| {rule} {name} | {points} | {proofs} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
