"""Every connection mdmbus opens, authenticated: the one place a Kafka client or a PostgreSQL
pool gets its identity, its password and its TLS context.

Kafka: every client re-reads the cluster's metadata every few seconds
(MDMBUS_KAFKA_METADATA_MAX_AGE), so that it follows partitions to their new leaders soon after
a broker dies, and every producer writes with acks=all and idempotence, gives up on a request
after MDMBUS_KAFKA_PRODUCER_REQUEST_TIMEOUT and sends it again (``producer_options``).
SCRAM-SHA-512 over TLS with the principal's password, verifying the broker's
certificate against the stack's CA (MDMBUS_CA_FILE); the provisioning admin of the embedded
stack by its certificate over mutual TLS instead (it creates the SCRAM users). PostgreSQL:
scram-sha-256 over TLS with the role's password, verifying the server's certificate. Who may do
what once connected is mdmbus/identities.py.
"""

from __future__ import annotations

import ssl
from typing import Any

import asyncpg

from mdmbus.errors import ConfigError
from mdmbus.identities import ADMIN, CERTIFICATE, certificate_name, pg_roles
from mdmbus.settings import Settings
from mdmbus.tls import client_ssl_context

__all__ = ["kafka_options", "producer_options", "admin_options", "librdkafka_config",
           "faust_credentials", "ca_context", "pg_pool",
           "pg_connect"]


def ca_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context that trusts the configured CA only and checks host names."""
    if not settings.ca_path.is_file():
        raise ConfigError(f"the CA certificate {settings.ca_path} does not exist: run `mdmbus "
                          f"stack up` (it creates it), or set MDMBUS_CA_FILE to your CA's")
    return client_ssl_context(settings.ca_path)


def kafka_options(settings: Settings, principal: str, region: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The keyword arguments of an aiokafka client acting as ``principal`` on the cluster of
    ``region`` (None: the global cluster)."""
    bootstrap = settings.kafka_bootstrap if region is None else settings.kafka_bootstrap_of(region)
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, **_follow_leaders(settings)}
    if settings.kafka_security == "sasl_ssl":
        options.update(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                       sasl_plain_username=principal,
                       sasl_plain_password=settings.password("kafka", principal),
                       ssl_context=ca_context(settings))
    options.update(extra)
    return options


def _follow_leaders(settings: Settings) -> dict[str, Any]:
    """aiokafka refreshes its metadata on some errors only, and every 5 minutes otherwise: a
    client that kept being told a dead broker leads a partition (until the controller fences
    it) could stay on that answer for minutes. Refreshed every few seconds, it sends to the new
    leader within that of the move."""
    return {"metadata_max_age_ms": int(settings.kafka_metadata_max_age_s * 1000)}


def producer_options(settings: Settings, principal: str, region: str | None = None,
                     **extra: Any) -> dict[str, Any]:
    """An AIOKafkaProducer's keyword arguments: acks=all (a record is acknowledged once the
    partition's in-sync replicas, at least min.insync.replicas of them, have it) with
    idempotence (a request sent again after a timeout or a leader change is not written
    twice), and a request bound shorter than aiokafka's 40 s, so that a request caught on a
    broker that died is sent again to the new leader soon. ``extra`` as kafka_options."""
    return kafka_options(settings, principal, region, **{
        "acks": "all", "enable_idempotence": True,
        "request_timeout_ms": int(settings.kafka_producer_request_timeout_s * 1000), **extra})


def admin_options(settings: Settings, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
    """The provisioning admin's client options: its certificate on a mutual-TLS listener
    (which works before any SCRAM user exists): the embedded broker's, or the one
    MDMBUS_KAFKA_ADMIN_BOOTSTRAP names; else, on a cluster of your own, the SCRAM principal
    ``admin``."""
    if not settings.kafka_admin_bootstrap and (
            settings.kafka_external or settings.kafka_region_bootstraps
            or settings.kafka_security != "sasl_ssl"):
        options = kafka_options(settings, ADMIN, **extra)
        if bootstrap:
            options["bootstrap_servers"] = bootstrap
        return options
    pki = settings.pki_dir
    return {"bootstrap_servers": settings.kafka_admin_bootstrap
            or f"127.0.0.1:{settings.kafka_mtls_port}",
            "security_protocol": "SSL",
            "ssl_context": client_ssl_context(settings.ca_path, pki / f"{ADMIN}.crt",
                                              pki / f"{ADMIN}.key"),
            **_follow_leaders(settings), **extra}


def librdkafka_config(settings: Settings, principal: str = ADMIN,
                      bootstrap: str | None = None) -> dict[str, Any]:
    """The same identity as :func:`admin_options` (``principal`` ADMIN) or :func:`kafka_options`
    for a librdkafka client (confluent-kafka), which takes file paths, not an SSL context: the
    ACL and SCRAM administration (mdmbus/stack/kafka_admin.py) goes through its AdminClient."""
    if principal == ADMIN:
        options = admin_options(settings, bootstrap)
    else:
        options = kafka_options(settings, principal)
        if bootstrap:
            options["bootstrap_servers"] = bootstrap
    config: dict[str, Any] = {"bootstrap.servers": options["bootstrap_servers"],
                              "security.protocol": options.get("security_protocol", "PLAINTEXT")}
    if config["security.protocol"] != "PLAINTEXT":
        config["ssl.ca.location"] = str(settings.ca_path)
    if config["security.protocol"] == "SSL":
        config["ssl.certificate.location"] = str(settings.pki_dir / f"{ADMIN}.crt")
        config["ssl.key.location"] = str(settings.pki_dir / f"{ADMIN}.key")
    if config["security.protocol"] == "SASL_SSL":
        config.update({"sasl.mechanism": options["sasl_mechanism"],
                       "sasl.username": options["sasl_plain_username"],
                       "sasl.password": options["sasl_plain_password"]})
    return config


def faust_credentials(settings: Settings, principal: str) -> Any:
    """faust's broker_credentials for ``principal`` (None without security)."""
    if settings.kafka_security != "sasl_ssl":
        return None
    import faust
    return faust.SASLCredentials(username=principal,
                                 password=settings.password("kafka", principal),
                                 mechanism="SCRAM-SHA-512", ssl_context=ca_context(settings))


_CERTIFICATE_ROLES = frozenset(r.name for r in pg_roles() if r.login == CERTIFICATE)


def _ssl(settings: Settings, role: str | None = None) -> ssl.SSLContext | bool:
    if not settings.pg_tls:
        return False
    if role in _CERTIFICATE_ROLES:
        name = certificate_name(role)
        cert, key = settings.pki_dir / f"{name}.crt", settings.pki_dir / f"{name}.key"
        if not (cert.is_file() and key.is_file()):
            raise ConfigError(f"PostgreSQL role {role} logs in by certificate, and {cert} or "
                              f"{key} does not exist: run `mdmbus stack credentials` (or "
                              f"`mdmbus stack up`), which issues it")
        ca_context(settings)  # the same check of the CA file and its message
        return client_ssl_context(settings.ca_path, cert, key)
    return ca_context(settings)


def _dsn(settings: Settings, database: str, role: str | None,
         connect_to: str | None = None) -> str:
    """A certificate role's DSN carries no password (it has none); others' settings.pg_dsn."""
    if role in _CERTIFICATE_ROLES:
        from urllib.parse import quote
        host, port = settings.pg_server(database)
        return f"postgresql://{quote(role, safe='')}@{host}:{port}/{connect_to or database}"
    return settings.pg_dsn(database, role, connect_to)


async def pg_pool(settings: Settings, database: str, role: str | None, *, min_size: int = 1,
                  max_size: int = 4, application: str = "mdmbus") -> asyncpg.Pool:
    """A pool to ``database`` as ``role`` (None: the provisioning superuser); ``application``
    names the process in pg_stat_activity."""
    return await asyncpg.create_pool(_dsn(settings, database, role), ssl=_ssl(settings, role),
                                     min_size=min_size, max_size=max_size,
                                     server_settings={"application_name": application[:63]})


async def pg_connect(settings: Settings, database: str, role: str | None = None,
                     connect_to: str | None = None, **kw: Any) -> asyncpg.Connection:
    """One connection to ``database`` (or ``connect_to`` on its server) as ``role`` (default:
    the provisioning superuser)."""
    return await asyncpg.connect(_dsn(settings, database, role, connect_to),
                                 ssl=_ssl(settings, role), **kw)
