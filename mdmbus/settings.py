"""One frozen settings object, read from the environment once at process start.

Every default works on the embedded stack (``mdmbus stack up``); compose overrides them through
the same ``MDMBUS_*`` variables. Nothing else in mdmbus reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from mdmbus.errors import ConfigError

__all__ = ["Settings", "checkout_root"]


def checkout_root() -> Path | None:
    """The source checkout mdmbus runs from (``./run`` installs it editable), or None when it
    runs from an installed wheel. Only the default state directory depends on it: everything
    the code reads at run time is package data."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "schemas" / "avro").is_dir():
        return root
    return None


def _default_state_dir(env: Mapping[str, str]) -> Path:
    """``.state/`` in the checkout; otherwise the user's state directory (XDG)."""
    checkout = checkout_root()
    if checkout is not None:
        return checkout / ".state"
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mdmbus"


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float,
            minimum: float | None = None, exclusive: bool = False) -> float:
    """A number from the environment; the error names the variable and what is wrong."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        bound = "greater than" if exclusive else "at least"
        raise ConfigError(f"{name}={raw!r} must be {bound} {minimum:g}")
    return value


def _prefix_bits(env: Mapping[str, str], name: str, default: int) -> int:
    """An IPv6 prefix length: 1 to 128 bits."""
    bits = int(_number(env, name, default, int, minimum=1))
    if bits > 128:
        raise ConfigError(f"{name}={env.get(name)!r} must be at most 128 (bits of an IPv6 "
                          "address)")
    return bits


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default, int))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, minimum=0, exclusive=True)


def _nonneg(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, minimum=0)


def _servers(env: Mapping[str, str]) -> dict[str, str]:
    prefix = "MDMBUS_PG_SERVER_"
    out = {}
    for name, value in env.items():
        if name.startswith(prefix) and value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(f"{name}={value!r} must be host:port")
            out[name[len(prefix):].lower()] = value
    return out


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _region_bootstraps(env: Mapping[str, str]) -> dict[str, str]:
    """MDMBUS_KAFKA_BOOTSTRAP_<REGION>: a region that is its own Kafka cluster."""
    from mdmbus.regions import REGIONS
    return {r: env[f"MDMBUS_KAFKA_BOOTSTRAP_{r.upper()}"] for r in REGIONS
            if env.get(f"MDMBUS_KAFKA_BOOTSTRAP_{r.upper()}")}


def _per_region(env: Mapping[str, str], prefix: str, default: Mapping[str, str]) -> dict[str, str]:
    """<prefix>_<REGION> for every region, else the region's default."""
    from mdmbus.regions import REGIONS
    return {r: env.get(f"{prefix}_{r.upper()}") or default.get(r, "") for r in REGIONS}


def _ports(env: Mapping[str, str], prefix: str, default: Mapping[str, int]) -> dict[str, int]:
    return {r: int(_number(env, f"{prefix}_{r.upper()}", default[r], int, minimum=1))
            for r in default}


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name)
    return Path(raw).expanduser().resolve() if raw else default


_GATEWAY_PORTS = {"na": 8441, "eu": 8442, "ap": 8443}
_TENANT_SLOTS = {"write": 4, "relay": 4, "export": 2, "read": 8, "delete": 1}


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mdmbus"


Read = Callable[[Mapping[str, str]], Any]


def _setting(default: Any = None, *, read: Read, factory: Callable[[], Any] | None = None,
             secret: bool = False) -> Any:
    """A field declared with how it is read from the environment: the one place a setting's
    variable, type, default and bounds are written (``Settings.from_env`` reads every field
    through its ``read``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"read": read}, repr=not secret)
    return field(default=default, metadata={"read": read}, repr=not secret)


def text(name: str, default: str = "") -> Any:
    return _setting(default, read=lambda env: env.get(name) or default)


def whole(name: str, default: int, minimum: int | None = None) -> Any:
    return _setting(default, read=lambda env: int(_number(env, name, default, int, minimum)))


def positive(name: str, default: float) -> Any:
    """A number greater than 0."""
    return _setting(default, read=lambda env: _float(env, name, default))


def nonnegative(name: str, default: float) -> Any:
    return _setting(default, read=lambda env: _nonneg(env, name, default))


def choice(name: str, default: str, choices: tuple[str, ...]) -> Any:
    return _setting(default, read=lambda env: _choice(env, name, default, choices))


def words(name: str, default: tuple[str, ...]) -> Any:
    """A comma-separated list."""
    return _setting(default, read=lambda env: tuple(
        w.strip() for w in env.get(name, ",".join(default)).split(",") if w.strip()))


def _optional_path(name: str) -> Read:
    def read(env: Mapping[str, str]) -> Path | None:
        raw = env.get(name)
        return Path(raw).expanduser().resolve() if raw else None
    return read


@dataclass(frozen=True)
class Settings:
    """Where the stack lives and how processes reach it. Each field is declared once, with the
    environment variable it is read from, its default and its bounds."""

    #: Kafka bootstrap servers. Empty means "the embedded broker on kafka_port".
    kafka_external: str = text("MDMBUS_KAFKA_BOOTSTRAP")
    #: A region that is its own Kafka cluster: region -> bootstrap servers
    #: (MDMBUS_KAFKA_BOOTSTRAP_<REGION>); other regions use kafka_bootstrap.
    kafka_region_bootstraps: Mapping[str, str] = _setting(read=lambda env: _region_bootstraps(env),
                                                          factory=dict)
    kafka_port: int = whole("MDMBUS_KAFKA_PORT", 19092, minimum=1)
    kafka_controller_port: int = whole("MDMBUS_KAFKA_CONTROLLER_PORT", 19093, minimum=1)
    #: The embedded broker's mutual-TLS listener (inter-broker traffic and the provisioning
    #: admin's certificate); 0: kafka_port + 2.
    kafka_broker_port: int = whole("MDMBUS_KAFKA_BROKER_PORT", 0, minimum=0)
    #: Where provisioning reaches a broker of your own (compose) with the admin's client
    #: certificate (<state>/pki/admin.crt): its mutual-TLS listener, "host:port". Empty: the
    #: embedded broker's, or SCRAM as admin on a broker of your own.
    kafka_admin_bootstrap: str = text("MDMBUS_KAFKA_ADMIN_BOOTSTRAP")
    #: Replicas of each topic provisioning creates: 1 on the embedded broker; the brokers of a
    #: cluster (compose: 3, with min.insync.replicas 2 in the brokers' own settings).
    kafka_replication_factor: int = whole("MDMBUS_KAFKA_REPLICATION_FACTOR", 1, minimum=1)
    kafka_version: str = text("MDMBUS_KAFKA_VERSION", "4.3.1")
    #: An existing Kafka installation (a directory with libs/*.jar) to run instead of Maven's.
    kafka_home: Path | None = _setting(None, read=_optional_path("MDMBUS_KAFKA_HOME"))
    #: Kafka broker heap; the embedded broker shares a small machine with PostgreSQL.
    kafka_heap: str = text("MDMBUS_KAFKA_HEAP", "768m")
    #: How a client follows a cluster that loses a broker (mdmbus/connections.py): every
    #: client asks for the cluster's metadata at least this often (seconds; aiokafka's 300
    #: left clients on a dead node's leadership for minutes), and a producer gives up on one
    #: request after this long (seconds) and sends it again, to the leader then known.
    kafka_metadata_max_age_s: float = positive("MDMBUS_KAFKA_METADATA_MAX_AGE", 5.0)
    kafka_producer_request_timeout_s: float = positive("MDMBUS_KAFKA_PRODUCER_REQUEST_TIMEOUT",
                                                       15.0)

    pg_host: str = text("MDMBUS_PG_HOST", "127.0.0.1")
    pg_port: int = whole("MDMBUS_PG_PORT", 55432, minimum=1)
    pg_user: str = text("MDMBUS_PG_USER", "postgres")
    pg_password: str = _setting("", read=lambda env: env.get("MDMBUS_PG_PASSWORD", ""),
                                secret=True)
    #: Connect to PostgreSQL over TLS, verifying the server against the CA (the embedded
    #: server accepts nothing else); off only for a server of your own without TLS.
    pg_tls: bool = _setting(True, read=lambda env: _choice(env, "MDMBUS_PG_TLS", "on",
                                                           ("on", "off")) == "on")
    #: Per-database servers (compose runs one PostgreSQL server per region): database name ->
    #: "host:port", from MDMBUS_PG_SERVER_<DATABASE> (e.g. MDMBUS_PG_SERVER_MDMBUS_NA=pg-na:5432).
    pg_servers: Mapping[str, str] = _setting(read=lambda env: _servers(env), factory=dict)
    #: Where /metrics listens (0.0.0.0 inside a container, so Prometheus can reach it).
    metrics_addr: str = text("MDMBUS_METRICS_ADDR", "127.0.0.1")

    #: Per-user cache of downloaded artifacts (Kafka jars); a second start needs no network.
    cache_dir: Path = _setting(read=lambda env: _path(env, "MDMBUS_CACHE_DIR",
                                                      _default_cache_dir(env)),
                               factory=lambda: _default_cache_dir(os.environ))
    #: Run-time state of the embedded stack: data, logs, pid files.
    state_dir: Path = _setting(read=lambda env: _path(env, "MDMBUS_STATE_DIR",
                                                      _default_state_dir(env)),
                               factory=lambda: _default_state_dir(os.environ))
    #: Every log file (Kafka's, PostgreSQL's, the processes') rolls over at this size; this
    #: many rolled files are kept besides the current one.
    log_max_bytes: int = whole("MDMBUS_LOG_MAX_BYTES", 50 * 1024 * 1024, minimum=64 * 1024)
    log_backups: int = whole("MDMBUS_LOG_BACKUPS", 5, minimum=1)

    #: Shared clock: simulated seconds per real second (see mdmbus.clock).
    clock_speed: float = positive("MDMBUS_CLOCK_SPEED", 1.0)
    #: Shared clock: the real Unix time at which simulated and real time coincided. Every process
    #: of one run must get the same value; 0 means "this process's start".
    clock_origin: float = nonnegative("MDMBUS_CLOCK_ORIGIN", 0.0)

    #: Processes: how many records a store write takes at most, and how long a batch may wait.
    batch_size: int = whole("MDMBUS_BATCH_SIZE", 500, minimum=1)
    batch_wait_s: float = positive("MDMBUS_BATCH_WAIT", 0.05)
    #: Pipeline: store writes of consecutive upload/relay batches in flight at once (1: each
    #: batch commits before the next is written). Offsets are committed in order, each only
    #: once its batch and every batch before it are durable (mdmbus.streams.runtime).
    writes_in_flight: int = whole("MDMBUS_WRITES_IN_FLIGHT", 2, minimum=1)
    #: How long a record of an unknown tenant waits for its onboarding to be applied (real s).
    unknown_tenant_wait_s: float = nonnegative("MDMBUS_UNKNOWN_TENANT_WAIT", 2.0)
    #: Sweepers: rows per delete statement (0 would loop forever on empty batches), and the
    #: pause between sweeps (real seconds).
    sweep_batch: int = whole("MDMBUS_SWEEP_BATCH", 5000, minimum=1)
    sweep_interval_s: float = positive("MDMBUS_SWEEP_INTERVAL", 0.5)
    #: Retention lifecycle (docs/design.md rule 4), in simulated days.
    retention_days: float = positive("MDMBUS_RETENTION_DAYS", 90.0)
    purge_after_retention_days: float = positive("MDMBUS_PURGE_AFTER_DAYS", 30.0)
    #: Temporary commands are deleted this long after session expiry (simulated seconds; the
    #: source allows one hour, mdmbus aims at once).
    command_grace_s: float = nonnegative("MDMBUS_COMMAND_GRACE", 0.0)
    #: A refused record's body is kept this long for operators (simulated days).
    dead_letter_days: float = positive("MDMBUS_DEAD_LETTER_DAYS", 7.0)
    #: Prometheus /metrics port of this process (0: none).
    metrics_port: int = whole("MDMBUS_METRICS_PORT", 0, minimum=0)
    #: Key-encryption keys (docs/design.md section 9): the file keyrings' directory (empty:
    #: <state>/keyring), how often a new KEK becomes current (simulated hours), at most once
    #: per how many real seconds (an accelerated clock would otherwise rotate continuously),
    #: and how long (real seconds) a retired KEK's data keys may take to be re-wrapped.
    keyring_dir: str = text("MDMBUS_KEYRING_DIR")
    kek_rotation_hours: float = positive("MDMBUS_KEK_ROTATION_HOURS", 24.0)
    kek_rotation_min_interval_s: float = nonnegative("MDMBUS_KEK_ROTATION_MIN_INTERVAL", 10.0)
    kek_rewrap_allowance_s: float = positive("MDMBUS_KEK_REWRAP_ALLOWANCE", 60.0)

    #: The tenants' HTTPS gateway: where it listens, a port per region, and the URL clients
    #: use for each region (MDMBUS_GATEWAY_URL_<REGION>; default https://127.0.0.1:<port>).
    gateway_addr: str = text("MDMBUS_GATEWAY_ADDR", "127.0.0.1")
    gateway_ports: Mapping[str, int] = _setting(
        read=lambda env: _ports(env, "MDMBUS_GATEWAY_PORT", _GATEWAY_PORTS),
        factory=lambda: dict(_GATEWAY_PORTS))
    gateway_urls: Mapping[str, str] = _setting(
        read=lambda env: {r: u for r, u in _per_region(env, "MDMBUS_GATEWAY_URL", {}).items()
                          if u}, factory=dict)
    #: Seconds a client has to send a request's body before the gateway answers 408.
    gateway_body_timeout_s: float = positive("MDMBUS_GATEWAY_BODY_TIMEOUT", 30.0)
    #: Seconds an upload (or a deletion request) waits for Kafka to acknowledge its records
    #: before the gateway answers 503 with Retry-After: while a dead broker's partitions move
    #: to new leaders, a client is told to retry instead of being held.
    gateway_produce_timeout_s: float = positive("MDMBUS_GATEWAY_PRODUCE_TIMEOUT", 10.0)
    #: Isolation at the door (services/gateway/guards.py): seconds a request waits for a
    #: database connection before 503 with Retry-After; seconds one write to a client may take
    #: (an export nobody reads is cut); seconds a new connection has to send its first
    #: request's headers; seconds an idle kept-alive connection stays open; connections open
    #: at once per gateway process; requests in flight per tenant and kind of route
    #: (MDMBUS_GATEWAY_SLOTS_<KIND>).
    gateway_acquire_timeout_s: float = positive("MDMBUS_GATEWAY_ACQUIRE_TIMEOUT", 2.0)
    gateway_write_timeout_s: float = positive("MDMBUS_GATEWAY_WRITE_TIMEOUT", 30.0)
    gateway_header_timeout_s: float = positive("MDMBUS_GATEWAY_HEADER_TIMEOUT", 10.0)
    #: (The keep-alive outlives common clients' pools, aiohttp's 15 s among them: a server that
    #: closes an idle connection as its client reuses it resets that client's request.)
    gateway_keepalive_s: float = positive("MDMBUS_GATEWAY_KEEPALIVE", 75.0)
    gateway_max_connections: int = whole("MDMBUS_GATEWAY_MAX_CONNECTIONS", 1000, minimum=1)
    #: Per source address, checked on the plain TCP connection before any TLS work (a flood
    #: of handshakes from one client is the cost no per-tenant limit reaches, since it comes
    #: before a token is read): connections open at once, and new connections a second,
    #: sustained, with a burst; one more is closed at once, unanswered.
    gateway_source_max_connections: int = whole("MDMBUS_GATEWAY_SOURCE_MAX_CONNECTIONS", 100,
                                                minimum=1)
    gateway_source_rate: float = positive("MDMBUS_GATEWAY_SOURCE_RATE", 20.0)
    gateway_source_burst: int = whole("MDMBUS_GATEWAY_SOURCE_BURST", 100, minimum=1)
    #: An IPv6 client counts by its network of this many bits, not its address: a /64 is one
    #: subscriber's, and holds more addresses than any limit per address could count.
    gateway_source_v6_prefix: int = _setting(
        64, read=lambda env: _prefix_bits(env, "MDMBUS_GATEWAY_SOURCE_V6_PREFIX", 64))
    gateway_tenant_slots: Mapping[str, int] = _setting(
        read=lambda env: {k: int(_number(env, f"MDMBUS_GATEWAY_SLOTS_{k.upper()}", v, int,
                                         minimum=1)) for k, v in _TENANT_SLOTS.items()},
        factory=lambda: dict(_TENANT_SLOTS))
    #: JSON nested deeper than this (upload lines, acknowledgements, produce lines) is refused
    #: with its own reason instead of exhausting the parser's recursion.
    json_max_depth: int = whole("MDMBUS_JSON_MAX_DEPTH", 64, minimum=2)
    #: Host names the stack's server certificates name besides 127.0.0.1 and localhost
    #: (compose: the gateways' service names).
    tls_hostnames: tuple[str, ...] = words("MDMBUS_TLS_HOSTNAMES", ())
    #: The gateway's TLS certificate chain and key, and the CA clients trust (empty: the
    #: embedded stack's, in <state>/pki).
    gateway_cert: str = text("MDMBUS_GATEWAY_CERT")
    gateway_key: str = text("MDMBUS_GATEWAY_KEY")
    ca_file: str = text("MDMBUS_CA_FILE")
    #: Tokens: the key set the gateway verifies against (a file or an https URL; empty: the
    #: embedded issuer's), the issuer and audience it requires, the algorithms it accepts.
    jwks: str = text("MDMBUS_JWKS")
    token_issuer: str = text("MDMBUS_TOKEN_ISSUER", "https://mdmbus.local/issuer")
    token_audience: str = text("MDMBUS_TOKEN_AUDIENCE", "mdmbus-gateway")
    token_algorithms: tuple[str, ...] = words("MDMBUS_TOKEN_ALGORITHMS", ("ES256",))
    #: The longest lifetime (exp - iat, seconds) a token may claim; a longer one is refused
    #: whatever its signature, so a leaked long-lived token cannot outlast a rotation.
    token_max_lifetime_s: float = positive("MDMBUS_TOKEN_MAX_LIFETIME", 24 * 3600.0)
    #: The privacy center's sign-in: an identity provider's OpenID Connect authorization and
    #: token endpoints and the page's client id there (empty: the embedded stack's provider,
    #: served by each gateway under /oidc/).
    oidc_authorization_url: str = text("MDMBUS_OIDC_AUTHORIZATION_URL")
    oidc_token_url: str = text("MDMBUS_OIDC_TOKEN_URL")
    oidc_client_id: str = text("MDMBUS_OIDC_CLIENT_ID")
    #: The CM connector: a directory of token files, one per tenant it serves (empty:
    #: <state>/cm/tokens).
    cm_tokens_dir: str = text("MDMBUS_CM_TOKENS")
    #: How clients reach Kafka: "sasl_ssl" (SCRAM-SHA-512 over TLS, the default and the only
    #: listener of the embedded broker) or "plaintext" (a broker of your own without security).
    kafka_security: str = choice("MDMBUS_KAFKA_SECURITY", "sasl_ssl", ("sasl_ssl", "plaintext"))
    #: The Kafka principal operators' tools act as (`mdmbus produce`, `mdmbus smoke`): the
    #: stack's admin unless you name one with less rights (MDMBUS_KAFKA_PRINCIPAL, --principal).
    kafka_principal: str = text("MDMBUS_KAFKA_PRINCIPAL", "admin")
    #: The environment's passwords (MDMBUS_PASSWORD_<KIND>_<NAME>); the rest is read from
    #: <state>/credentials/<kind>/<name>, where the embedded stack generates them.
    passwords: Mapping[str, str] = _setting(
        read=lambda env: {k: v for k, v in env.items() if k.startswith("MDMBUS_PASSWORD_")},
        factory=dict, secret=True)

    #: How long `stack up` waits for each server to answer.
    start_timeout_s: float = positive("MDMBUS_START_TIMEOUT", 90.0)

    @property
    def kafka_bootstrap(self) -> str:
        """The global cluster (the tenant lifecycle topic), and every region's by default."""
        return self.kafka_external or f"127.0.0.1:{self.kafka_port}"

    def kafka_bootstrap_of(self, region: str) -> str:
        """The cluster that holds ``region``'s topics."""
        return self.kafka_region_bootstraps.get(region) or self.kafka_bootstrap

    @property
    def kafka_mtls_port(self) -> int:
        """The embedded broker's mutual-TLS listener."""
        return self.kafka_broker_port or self.kafka_port + 2

    @property
    def credentials_dir(self) -> Path:
        return self.state_dir / "credentials"

    def password(self, kind: str, name: str, required: bool = True) -> str:
        """The password of a Kafka principal (``kind`` "kafka") or a PostgreSQL role ("pg"):
        MDMBUS_PASSWORD_<KIND>_<NAME> (upper case, "-" as "_"), else the stack's file; ""
        when there is none and it is not ``required``."""
        variable = f"MDMBUS_PASSWORD_{kind}_{name}".upper().replace("-", "_")
        if self.passwords.get(variable):
            return self.passwords[variable]
        path = self.credentials_dir / kind / name
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if not required:
                return ""
            raise ConfigError(f"no password for {kind} identity {name!r}: set {variable}, or run "
                              f"`mdmbus stack up` (it writes {path})") from None

    @property
    def keyring_path(self) -> Path:
        return Path(self.keyring_dir) if self.keyring_dir else self.state_dir / "keyring"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def issuer_dir(self) -> Path:
        return self.state_dir / "issuer"

    @property
    def ca_path(self) -> Path:
        return Path(self.ca_file) if self.ca_file else self.pki_dir / "ca.crt"

    @property
    def jwks_source(self) -> str:
        return self.jwks or str(self.issuer_dir / "jwks.json")

    @property
    def cm_tokens_path(self) -> Path:
        return Path(self.cm_tokens_dir) if self.cm_tokens_dir else self.state_dir / "cm" / "tokens"

    def gateway_url(self, region: str) -> str:
        """Where clients reach ``region``'s gateway."""
        return self.gateway_urls.get(region) or f"https://127.0.0.1:{self.gateway_ports[region]}"

    def pg_server(self, database: str) -> tuple[str, int]:
        """The (host, port) of the server that holds ``database``."""
        server = self.pg_servers.get(database)
        if server is None:
            return self.pg_host, self.pg_port
        host, _, port = server.rpartition(":")
        return host, int(port)

    def pg_dsn(self, database: str, role: str | None = None, connect_to: str | None = None) -> str:
        """DSN of ``database`` as ``role`` (default: the provisioning superuser, pg_user);
        ``connect_to`` names another database on the same server."""
        from urllib.parse import quote
        host, port = self.pg_server(database)
        role = role or self.pg_user
        if role == self.pg_user:
            # the provisioning superuser: MDMBUS_PG_PASSWORD, else the stack's file, else none
            # (a server of your own that trusts local connections)
            password = self.pg_password or self.password("pg", role, required=False)
        else:
            password = self.password("pg", role)
        auth = quote(role, safe="") + (":" + quote(password, safe="") if password else "")
        return f"postgresql://{auth}@{host}:{port}/{connect_to or database}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Every field from its variable (its default where the variable is unset or empty);
        a value out of its bounds is refused here, naming the variable."""
        env = os.environ if env is None else env
        return cls(**{f.name: f.metadata["read"](env) for f in fields(cls)})
