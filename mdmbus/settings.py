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
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_version: str = "4.3.1"
    #: An existing Kafka installation (a directory with libs/*.jar) to run instead of Maven's.
    kafka_home: Path | None = None
    #: Kafka broker heap; the embedded broker shares a small machine with PostgreSQL.
    kafka_heap: str = "768m"

    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_user: str = "postgres"
    pg_password: str = field(default="", repr=False)
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
    #: Prometheus /metrics port of this process (0: none).
    metrics_port: int = 0

    #: How long `stack up` waits for each server to answer.
    start_timeout_s: float = 90.0

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_external or f"127.0.0.1:{self.kafka_port}"

    def pg_server(self, database: str) -> tuple[str, int]:
        """The (host, port) of the server that holds ``database``."""
        server = self.pg_servers.get(database)
        if server is None:
            return self.pg_host, self.pg_port
        host, _, port = server.rpartition(":")
        return host, int(port)

    def pg_dsn(self, database: str, connect_to: str | None = None) -> str:
        """DSN of ``database``; ``connect_to`` names another database on the same server."""
        from urllib.parse import quote
        host, port = self.pg_server(database)
        auth = quote(self.pg_user, safe="")
        if self.pg_password:
            auth += ":" + quote(self.pg_password, safe="")
        return f"postgresql://{auth}@{host}:{port}/{connect_to or database}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        kafka_home = env.get("MDMBUS_KAFKA_HOME")
        return cls(
            kafka_external=env.get("MDMBUS_KAFKA_BOOTSTRAP", ""),
            kafka_port=_int(env, "MDMBUS_KAFKA_PORT", cls.kafka_port),
            kafka_controller_port=_int(env, "MDMBUS_KAFKA_CONTROLLER_PORT", cls.kafka_controller_port),
            kafka_version=env.get("MDMBUS_KAFKA_VERSION", cls.kafka_version),
            kafka_home=Path(kafka_home).expanduser().resolve() if kafka_home else None,
            kafka_heap=env.get("MDMBUS_KAFKA_HEAP", cls.kafka_heap),
            pg_host=env.get("MDMBUS_PG_HOST", cls.pg_host),
            pg_port=_int(env, "MDMBUS_PG_PORT", cls.pg_port),
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
            metrics_port=_int(env, "MDMBUS_METRICS_PORT", cls.metrics_port),
            start_timeout_s=_float(env, "MDMBUS_START_TIMEOUT", cls.start_timeout_s),
        )
