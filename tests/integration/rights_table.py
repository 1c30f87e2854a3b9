"""Who may do what, written out by hand: the oracle the identity tests hold the running Kafka
broker and PostgreSQL server to. It is deliberately not computed from mdmbus/identities.py (the
declaration under test): a right added there by mistake (the gateway writing relay records
that reach CM, a sweeper reading bodies) is refused here, and the servers then disagree with
this table.

Reading guide, per region r (na, eu, ap):

Kafka
- ``pipeline-r`` reads, truncates (DELETE) and appends markers to (WRITE) its five transit
  topics (uploads, relay, device sessions and commands, deletion requests), writes dead-letter
  notices, reads the tenant lifecycle, and uses groups named ``mdmbus-r-...``.
- ``sweeper-r`` sees offsets only: DESCRIBE of the transit and dead-letter topics and groups.
- ``gateway-r`` writes tenants' uploads and deletion requests, each to its own region's topic;
  never the global lifecycle topic (onboarding, subscription ends and cancellations are the
  account service's), nothing on relay, device or dead-letter topics: it serves relay records
  from the store, never forges them.
- ``devices-r`` (the cloud's device side) writes relay, device-session and device-command
  records; reads nothing.
- ``accounts`` writes the tenant lifecycle only.

PostgreSQL (S = SELECT, I = INSERT, U = UPDATE, D = DELETE; columns where limited)
- pipeline: every region table but receipts SIUD (deletion_audit I only), the directory's
  tenant rows SIU and lifecycle refusals SI;
- sweeper: deadlines, ids and wrapped data keys of records and dead letters (never a body), U
  of the wrapped keys only (KEK rotation) and D of both, tenants
  and sessions SD, purged tenants SI, audit I, the directory S and U of state/purged_at;
- gateway: records S only (acknowledgements go through the owner's function), dead letters S
  of the counting columns (never a body or an error text), audit SI, receipts SIU, the
  directory S;
- reader (operators): every region table S;
- directory reader (producers): the directory S; the CM connector: relayed records and
  conflicts SI.
"""

from __future__ import annotations

__all__ = ["KAFKA", "kafka_may", "pg_may", "PG", "SEQUENCE_USERS", "REGION_NAMES", "FUNCTIONS",
           "POLICIES", "PRINCIPALS", "LOGIN_ROLES", "DATABASE_PRIVILEGES"]

#: The regions, by name (not read from mdmbus.regions either).
REGION_NAMES = ("na", "eu", "ap")

_TRANSIT = ("upload", "relay", "device.sessions", "device.commands", "deletion.requests")


def _kafka() -> set[tuple[str, str, str, str, str]]:
    """(principal, resource, name, pattern, operation) of every ACL."""
    out: set[tuple[str, str, str, str, str]] = {
        ("accounts", "TOPIC", "mdm.tenant.lifecycle", "LITERAL", "WRITE")}
    for r in REGION_NAMES:
        for t in _TRANSIT:
            for op in ("READ", "WRITE", "DELETE"):
                out.add((f"pipeline-{r}", "TOPIC", f"mdm.{r}.{t}", "LITERAL", op))
            out.add((f"sweeper-{r}", "TOPIC", f"mdm.{r}.{t}", "LITERAL", "DESCRIBE"))
        out |= {
            (f"pipeline-{r}", "TOPIC", f"mdm.{r}.deadletter", "LITERAL", "WRITE"),
            (f"pipeline-{r}", "TOPIC", "mdm.tenant.lifecycle", "LITERAL", "READ"),
            (f"pipeline-{r}", "GROUP", f"mdmbus-{r}-", "PREFIXED", "READ"),
            (f"sweeper-{r}", "TOPIC", f"mdm.{r}.deadletter", "LITERAL", "DESCRIBE"),
            (f"sweeper-{r}", "GROUP", f"mdmbus-{r}-", "PREFIXED", "DESCRIBE"),
            (f"gateway-{r}", "TOPIC", f"mdm.{r}.upload", "LITERAL", "WRITE"),
            (f"gateway-{r}", "TOPIC", f"mdm.{r}.deletion.requests", "LITERAL", "WRITE"),
            (f"devices-{r}", "TOPIC", f"mdm.{r}.relay", "LITERAL", "WRITE"),
            (f"devices-{r}", "TOPIC", f"mdm.{r}.device.sessions", "LITERAL", "WRITE"),
            (f"devices-{r}", "TOPIC", f"mdm.{r}.device.commands", "LITERAL", "WRITE"),
        }
    return out


KAFKA = frozenset(_kafka())

#: Kafka's implications: READ, WRITE and DELETE each allow DESCRIBE.
_IMPLIED_BY = {"DESCRIBE": {"DESCRIBE", "READ", "WRITE", "DELETE"}}


def kafka_may(principal: str, resource: str, name: str, op: str) -> bool:
    """Whether ``principal`` may ``op`` the ``resource`` called ``name`` (literal and prefixed
    patterns as Kafka's authorizer applies them)."""
    ops = _IMPLIED_BY.get(op, {op})
    for who, res, pattern_name, pattern, granted in KAFKA:
        if who != principal or res != resource or granted not in ops:
            continue
        if pattern == "LITERAL" and pattern_name == name:
            return True
        if pattern == "PREFIXED" and name.startswith(pattern_name):
            return True
    return False


_SWEEPER_RECORD_COLUMNS = ("category", "deadline", "deadline_rule", "has_body", "kek_id",
                           "record_id", "stored_at_real", "tenant_id", "wrapped_key")
_SWEEPER_LETTER_COLUMNS = ("body_kept", "deadline", "kek_id", "record_id", "source_offset",
                           "source_partition", "source_topic", "tenant_id", "wrapped_key")
#: The sweeper re-wraps data keys under a new KEK (the rotation): it never reads a body.
_WRAPPED_KEY = ("kek_id", "wrapped_key")
_GATEWAY_LETTER_COLUMNS = ("body_kept", "deadline", "reason", "stored_at", "tenant_id")
_ALL = None  # every column


def _pg() -> dict[tuple[str, str, str, str], tuple[str, ...] | None]:
    """(database, table, role, privilege) -> the columns it covers (None: all)."""
    out: dict[tuple[str, str, str, str], tuple[str, ...] | None] = {}

    def grant(db: str, role: str, table: str, privileges: str,
              columns: tuple[str, ...] | None = _ALL) -> None:
        names = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE"}
        for p in privileges:
            out[(db, table, role, names[p])] = columns

    d = "mdmbus_directory"
    for r in REGION_NAMES:
        db = f"mdmbus_{r}"
        pipeline, sweeper = f"mdmbus_{r}_pipeline", f"mdmbus_{r}_sweeper"
        gateway, reader = f"mdmbus_{r}_gateway", f"mdmbus_{r}_reader"
        for table in ("tenants", "purged_tenants", "records", "device_sessions",
                      "dead_letters"):
            grant(db, pipeline, table, "SIUD")
        grant(db, pipeline, "deletion_audit", "I")
        grant(d, pipeline, "tenant_directory", "SIU")
        grant(d, pipeline, "lifecycle_refusals", "SI")

        grant(db, sweeper, "records", "S", _SWEEPER_RECORD_COLUMNS)
        grant(db, sweeper, "records", "D")
        grant(db, sweeper, "records", "U", _WRAPPED_KEY)
        grant(db, sweeper, "dead_letters", "U", _WRAPPED_KEY)
        grant(db, sweeper, "dead_letters", "S", _SWEEPER_LETTER_COLUMNS)
        grant(db, sweeper, "dead_letters", "D")
        grant(db, sweeper, "tenants", "SD")
        grant(db, sweeper, "device_sessions", "SD")
        grant(db, sweeper, "purged_tenants", "SI")
        grant(db, sweeper, "deletion_audit", "I")
        grant(d, sweeper, "tenant_directory", "S")
        grant(d, sweeper, "tenant_directory", "U", ("purged_at", "state"))

        grant(db, gateway, "records", "S")
        grant(db, gateway, "dead_letters", "S", _GATEWAY_LETTER_COLUMNS)
        grant(db, gateway, "deletion_audit", "SI")
        grant(db, gateway, "erasure_receipts", "SIU")
        grant(d, gateway, "tenant_directory", "S")

        for table in ("tenants", "purged_tenants", "records", "device_sessions",
                      "deletion_audit", "dead_letters", "erasure_receipts"):
            grant(db, reader, table, "S")
    grant(d, "mdmbus_directory_reader", "tenant_directory", "S")
    grant(d, "mdmbus_directory_reader", "lifecycle_refusals", "S")
    grant("mdmbus_cm", "mdmbus_cm_connector", "relayed_records", "SI")
    grant("mdmbus_cm", "mdmbus_cm_connector", "relay_conflicts", "SI")
    return out


PG = _pg()

#: (database, role) that may draw audit ids from deletion_audit_id_seq.
SEQUENCE_USERS = frozenset((f"mdmbus_{r}", f"mdmbus_{r}_{s}") for r in REGION_NAMES
                           for s in ("pipeline", "sweeper", "gateway"))


def pg_may(role: str, database: str, table: str, privilege: str, column: str | None) -> bool:
    """Whether ``role`` holds ``privilege`` on ``table`` (on ``column``, where given)."""
    key = (database, table, role, privilege)
    if key not in PG:
        return False
    columns = PG[key]
    return columns is None or column in columns

#: Who may call the region stores' functions (they run as the tables' owner): the gateway
#: acknowledges relay records, the pipeline and the sweeper purge a tenant; nobody else.
FUNCTIONS = frozenset(
    [(f"mdmbus_{r}", "acknowledge_relay", f"mdmbus_{r}_gateway", "EXECUTE")
     for r in REGION_NAMES]
    + [(f"mdmbus_{r}", "purge_tenant_records", f"mdmbus_{r}_{service}", "EXECUTE")
       for r in REGION_NAMES for service in ("pipeline", "sweeper")])

_TENANT = "tenant_id = nullif(current_setting('mdmbus.tenant', true), '')::uuid"


def _policies() -> set[tuple[str, str, str, str, str, str, str]]:
    """(database, table, role, policy name, command, USING, WITH CHECK): row-level security.
    The gateway sees the tenant its request set (mdmbus.tenant) and nothing when none is set;
    operators' readers and the pipeline and sweeper see every row of their region; the
    owner's functions every record (each names its tenant itself); in the directory the
    pipeline reads every tenant but adds and changes only its region's, the sweeper only
    its region's, the gateway its caller's, the directory reader every one."""
    out = set()
    for r in REGION_NAMES:
        db, gateway, here = f"mdmbus_{r}", f"mdmbus_{r}_gateway", f"region = '{r}'"
        for table in ("records", "deletion_audit", "erasure_receipts", "dead_letters"):
            out.add((db, table, gateway, "caller_tenant_only", "ALL", _TENANT, _TENANT))
            out.add((db, table, f"mdmbus_{r}_reader", "every_row", "SELECT", "true", "true"))
        for service in ("pipeline", "sweeper"):
            for table in ("records", "deletion_audit", "dead_letters"):
                out.add((db, table, f"mdmbus_{r}_{service}", "every_row", "ALL", "true",
                         "true"))
        out.add((db, "records", f"mdmbus_{r}_owner", "definer_functions", "ALL", "true",
                 "true"))
        directory, pipeline = "mdmbus_directory", f"mdmbus_{r}_pipeline"
        out |= {(directory, "tenant_directory", pipeline, "every_row", "SELECT", "true", "true"),
                (directory, "tenant_directory", pipeline, f"insert_region_{r}", "INSERT", "true",
                 here),
                (directory, "tenant_directory", pipeline, f"update_region_{r}", "UPDATE", here,
                 here),
                (directory, "tenant_directory", f"mdmbus_{r}_sweeper", f"region_{r}", "ALL",
                 here, here),
                (directory, "tenant_directory", gateway, "caller_tenant_only", "SELECT",
                 _TENANT, _TENANT)}
    out.add(("mdmbus_directory", "tenant_directory", "mdmbus_directory_reader", "every_row",
             "SELECT", "true", "true"))
    return out


#: Row-level security, by hand (a WITH CHECK left out is the USING expression).
POLICIES = frozenset(_policies())


#: Kafka principal of each (service, region); None: a service of the whole cluster.
PRINCIPALS = {**{(service, r): f"{service}-{r}" for service in ("pipeline", "sweeper",
                                                                 "gateway", "devices")
                 for r in REGION_NAMES},
              ("accounts", None): "accounts", ("admin", None): "admin"}


def _login_roles() -> dict[str, tuple[frozenset[str], str]]:
    """PostgreSQL login role -> (the databases it connects to, how it logs in): services by
    client certificate, operators' readers and producers' directory lookups by password."""
    out = {}
    for r in REGION_NAMES:
        both = frozenset((f"mdmbus_{r}", "mdmbus_directory"))
        for service in ("pipeline", "sweeper", "gateway"):
            out[f"mdmbus_{r}_{service}"] = (both, "certificate")
        out[f"mdmbus_{r}_reader"] = (frozenset((f"mdmbus_{r}",)), "password")
    out["mdmbus_directory_reader"] = (frozenset(("mdmbus_directory",)), "password")
    out["mdmbus_cm_connector"] = (frozenset(("mdmbus_cm",)), "certificate")
    return out


LOGIN_ROLES = _login_roles()

#: (database, role, privilege) on databases: CONNECT where a role connects, TEMPORARY for
#: the pipeline (its bulk writes stage rows in a temporary table); nothing else.
DATABASE_PRIVILEGES = frozenset(
    {(db, role, "CONNECT") for role, (dbs, _) in LOGIN_ROLES.items() for db in dbs}
    | {(f"mdmbus_{r}", f"mdmbus_{r}_pipeline", "TEMPORARY") for r in REGION_NAMES})
