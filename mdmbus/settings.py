"""One frozen settings object, read from the environment once at process start.

Every default works on the embedded stack (``mdmbus stack up``); compose overrides them through
the same ``MDMBUS_*`` variables. Nothing else in mdmbus reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int)


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


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mdmbus"


@dataclass(frozen=True)
class Settings:
    """Where the stack lives and how processes reach it."""

    #: Kafka bootstrap servers. Empty means "the embedded broker on kafka_port".
    kafka_external: str = ""
    #: A region that is its own Kafka cluster: region -> bootstrap servers
    #: (MDMBUS_KAFKA_BOOTSTRAP_<REGION>); other regions use kafka_bootstrap.
    kafka_region_bootstraps: Mapping[str, str] = field(default_factory=dict)
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    #: The embedded broker's mutual-TLS listener (inter-broker traffic and the provisioning
    #: admin's certificate); 0: kafka_port + 2.
    kafka_broker_port: int = 0
    #: Where provisioning reaches a broker of your own (compose) with the admin's client
    #: certificate (<state>/pki/admin.crt): its mutual-TLS listener, "host:port". Empty: the
    #: embedded broker's, or SCRAM as admin on a broker of your own.
    kafka_admin_bootstrap: str = ""
    #: Replicas of each topic provisioning creates: 1 on the embedded broker; the brokers of a
    #: cluster (compose: 3, with min.insync.replicas 2 in the brokers' own settings).
    kafka_replication_factor: int = 1
    kafka_version: str = "4.3.1"
    #: An existing Kafka installation (a directory with libs/*.jar) to run instead of Maven's.
    kafka_home: Path | None = None
    #: Kafka broker heap; the embedded broker shares a small machine with PostgreSQL.
    kafka_heap: str = "768m"

    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_user: str = "postgres"
    pg_password: str = field(default="", repr=False)
    #: Connect to PostgreSQL over TLS, verifying the server against the CA (the embedded
    #: server accepts nothing else); off only for a server of your own without TLS.
    pg_tls: bool = True
    #: Per-database servers (compose runs one PostgreSQL server per region): database name ->
    #: "host:port", from MDMBUS_PG_SERVER_<DATABASE> (e.g. MDMBUS_PG_SERVER_MDMBUS_NA=pg-na:5432).
    pg_servers: Mapping[str, str] = field(default_factory=dict)
    #: Where /metrics listens (0.0.0.0 inside a container, so Prometheus can reach it).
    metrics_addr: str = "127.0.0.1"

    #: Per-user cache of downloaded artifacts (Kafka jars); a second start needs no network.
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir(os.environ))
    #: Run-time state of the embedded stack: data, logs, pid files.
    state_dir: Path = field(default_factory=lambda: _default_state_dir(os.environ))

    #: Shared clock: simulated seconds per real second (see mdmbus.clock).
    clock_speed: float = 1.0
    #: Shared clock: the real Unix time at which simulated and real time coincided. Every process
    #: of one run must get the same value; 0 means "this process's start".
    clock_origin: float = 0.0

    #: Processes: how many records a store write takes at most, and how long a batch may wait.
    batch_size: int = 500
    batch_wait_s: float = 0.05
    #: How long a record of an unknown tenant waits for its onboarding to be applied (real s).
    unknown_tenant_wait_s: float = 2.0
    #: Sweepers: rows per delete statement, and the pause between sweeps (real seconds).
    sweep_batch: int = 5000
    sweep_interval_s: float = 0.5
    #: Retention lifecycle (docs/design.md rule 4), in simulated days.
    retention_days: float = 90.0
    purge_after_retention_days: float = 30.0
    #: Temporary commands are deleted this long after session expiry (simulated seconds; the
    #: source allows one hour, mdmbus aims at once).
    command_grace_s: float = 0.0
    #: A refused record's body is kept this long for operators (simulated days).
    dead_letter_days: float = 7.0
    #: Prometheus /metrics port of this process (0: none).
    metrics_port: int = 0

    #: The tenants' HTTPS gateway: where it listens, a port per region, and the URL clients
    #: use for each region (MDMBUS_GATEWAY_URL_<REGION>; default https://127.0.0.1:<port>).
    gateway_addr: str = "127.0.0.1"
    gateway_ports: Mapping[str, int] = field(
        default_factory=lambda: {"na": 8441, "eu": 8442, "ap": 8443})
    gateway_urls: Mapping[str, str] = field(default_factory=dict)
    #: Seconds a client has to send a request's body before the gateway answers 408.
    gateway_body_timeout_s: float = 30.0
    #: Host names the stack's server certificates name besides 127.0.0.1 and localhost
    #: (compose: the gateways' service names).
    tls_hostnames: tuple[str, ...] = ()
    #: The gateway's TLS certificate chain and key, and the CA clients trust (empty: the
    #: embedded stack's, in <state>/pki).
    gateway_cert: str = ""
    gateway_key: str = ""
    ca_file: str = ""
    #: Tokens: the key set the gateway verifies against (a file or an https URL; empty: the
    #: embedded issuer's), the issuer and audience it requires, the algorithms it accepts.
    jwks: str = ""
    token_issuer: str = "https://mdmbus.local/issuer"
    token_audience: str = "mdmbus-gateway"
    token_algorithms: tuple[str, ...] = ("ES256",)
    #: The CM connector: a directory of token files, one per tenant it serves (empty:
    #: <state>/cm/tokens).
    cm_tokens_dir: str = ""
    #: How clients reach Kafka: "sasl_ssl" (SCRAM-SHA-512 over TLS, the default and the only
    #: listener of the embedded broker) or "plaintext" (a broker of your own without security).
    kafka_security: str = "sasl_ssl"
    #: The Kafka principal operators' tools act as (`mdmbus produce`, `mdmbus smoke`): the
    #: stack's admin unless you name one with less rights (MDMBUS_KAFKA_PRINCIPAL, --principal).
    kafka_principal: str = "admin"
    #: The environment's passwords (MDMBUS_PASSWORD_<KIND>_<NAME>); the rest is read from
    #: <state>/credentials/<kind>/<name>, where the embedded stack generates them.
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)

    #: How long `stack up` waits for each server to answer.
    start_timeout_s: float = 90.0

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
        env = os.environ if env is None else env
        kafka_home = env.get("MDMBUS_KAFKA_HOME")
        return cls(
            kafka_external=env.get("MDMBUS_KAFKA_BOOTSTRAP", ""),
            kafka_region_bootstraps=_region_bootstraps(env),
            kafka_port=_int(env, "MDMBUS_KAFKA_PORT", cls.kafka_port),
            kafka_controller_port=_int(env, "MDMBUS_KAFKA_CONTROLLER_PORT", cls.kafka_controller_port),
            kafka_broker_port=_int(env, "MDMBUS_KAFKA_BROKER_PORT", cls.kafka_broker_port),
            kafka_admin_bootstrap=env.get("MDMBUS_KAFKA_ADMIN_BOOTSTRAP", ""),
            kafka_replication_factor=_int(env, "MDMBUS_KAFKA_REPLICATION_FACTOR",
                                          cls.kafka_replication_factor),
            kafka_version=env.get("MDMBUS_KAFKA_VERSION", cls.kafka_version),
            kafka_home=Path(kafka_home).expanduser().resolve() if kafka_home else None,
            kafka_heap=env.get("MDMBUS_KAFKA_HEAP", cls.kafka_heap),
            pg_host=env.get("MDMBUS_PG_HOST", cls.pg_host),
            pg_port=_int(env, "MDMBUS_PG_PORT", cls.pg_port),
            pg_tls=_choice(env, "MDMBUS_PG_TLS", "on", ("on", "off")) == "on",
            pg_user=env.get("MDMBUS_PG_USER", cls.pg_user),
            pg_password=env.get("MDMBUS_PG_PASSWORD", ""),
            pg_servers=_servers(env),
            metrics_addr=env.get("MDMBUS_METRICS_ADDR", cls.metrics_addr),
            cache_dir=_path(env, "MDMBUS_CACHE_DIR", _default_cache_dir(env)),
            state_dir=_path(env, "MDMBUS_STATE_DIR", _default_state_dir(env)),
            clock_speed=_float(env, "MDMBUS_CLOCK_SPEED", cls.clock_speed),
            clock_origin=_nonneg(env, "MDMBUS_CLOCK_ORIGIN", cls.clock_origin),
            batch_size=_int(env, "MDMBUS_BATCH_SIZE", cls.batch_size),
            batch_wait_s=_float(env, "MDMBUS_BATCH_WAIT", cls.batch_wait_s),
            unknown_tenant_wait_s=_nonneg(env, "MDMBUS_UNKNOWN_TENANT_WAIT",
                                          cls.unknown_tenant_wait_s),
            sweep_batch=_int(env, "MDMBUS_SWEEP_BATCH", cls.sweep_batch),
            sweep_interval_s=_float(env, "MDMBUS_SWEEP_INTERVAL", cls.sweep_interval_s),
            retention_days=_float(env, "MDMBUS_RETENTION_DAYS", cls.retention_days),
            purge_after_retention_days=_float(env, "MDMBUS_PURGE_AFTER_DAYS",
                                              cls.purge_after_retention_days),
            command_grace_s=_nonneg(env, "MDMBUS_COMMAND_GRACE", cls.command_grace_s),
            dead_letter_days=_float(env, "MDMBUS_DEAD_LETTER_DAYS", cls.dead_letter_days),
            metrics_port=_int(env, "MDMBUS_METRICS_PORT", cls.metrics_port),
            gateway_addr=env.get("MDMBUS_GATEWAY_ADDR", cls.gateway_addr),
            gateway_ports=_ports(env, "MDMBUS_GATEWAY_PORT", cls().gateway_ports),
            gateway_urls={r: u for r, u in _per_region(env, "MDMBUS_GATEWAY_URL", {}).items() if u},
            gateway_body_timeout_s=_float(env, "MDMBUS_GATEWAY_BODY_TIMEOUT",
                                          cls.gateway_body_timeout_s),
            tls_hostnames=tuple(h.strip() for h in env.get("MDMBUS_TLS_HOSTNAMES", "").split(",")
                                if h.strip()),
            gateway_cert=env.get("MDMBUS_GATEWAY_CERT", ""),
            gateway_key=env.get("MDMBUS_GATEWAY_KEY", ""),
            ca_file=env.get("MDMBUS_CA_FILE", ""),
            jwks=env.get("MDMBUS_JWKS", ""),
            token_issuer=env.get("MDMBUS_TOKEN_ISSUER", cls.token_issuer),
            token_audience=env.get("MDMBUS_TOKEN_AUDIENCE", cls.token_audience),
            token_algorithms=tuple(a.strip() for a in env.get(
                "MDMBUS_TOKEN_ALGORITHMS", ",".join(cls.token_algorithms)).split(",") if a.strip()),
            cm_tokens_dir=env.get("MDMBUS_CM_TOKENS", ""),
            kafka_security=_choice(env, "MDMBUS_KAFKA_SECURITY", cls.kafka_security,
                                   ("sasl_ssl", "plaintext")),
            kafka_principal=env.get("MDMBUS_KAFKA_PRINCIPAL") or cls.kafka_principal,
            passwords={k: v for k, v in env.items() if k.startswith("MDMBUS_PASSWORD_")},
            start_timeout_s=_float(env, "MDMBUS_START_TIMEOUT", cls.start_timeout_s),
        )
