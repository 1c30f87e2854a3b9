"""`mdmbus stack up | down | status`: both servers, then what the pipeline needs in them."""

from __future__ import annotations

import asyncio
from typing import Callable

from mdmbus.regions import all_databases
from mdmbus.settings import Settings
from mdmbus.topics import all_topics
from mdmbus.stack import kafka, postgres
from mdmbus.stack import provision as provisioning
from mdmbus.stack.pki import Pki
from mdmbus.stack.processes import ensure_port_free
from mdmbus.stack.token_issuer import TokenIssuer

__all__ = ["up", "down", "status", "provision_servers", "credentials", "issuer"]


def issuer(settings: Settings) -> TokenIssuer:
    """The embedded stack's token issuer (its key and JWKS in <state>/issuer)."""
    return TokenIssuer(settings.issuer_dir, settings.token_issuer, settings.token_audience)


def credentials(settings: Settings) -> list[str]:
    """Creates what the embedded stack's TLS and tokens need, once: the CA, the gateway's
    certificate, the token issuer's key; returns the files, for status."""
    pki = Pki(settings.pki_dir)
    cert, key = pki.ensure("gateway", server=True, hostnames=settings.tls_hostnames)
    issuer(settings).ensure()
    return [str(pki.ca_file), str(cert), str(key), str(settings.issuer_dir / "jwks.json")]


def up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Idempotent: what runs is left running, what is missing is started or created."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Check every port before starting anything, so a clash leaves nothing half-started.
    if not postgres.running(postgres.pg_paths(settings)):
        ensure_port_free(settings.pg_port, "PostgreSQL", "MDMBUS_PG_PORT")
    if not settings.kafka_external and kafka.running_pid(settings) is None:
        ensure_port_free(settings.kafka_port, "Kafka", "MDMBUS_KAFKA_PORT")
        ensure_port_free(settings.kafka_controller_port, "the Kafka controller",
                         "MDMBUS_KAFKA_CONTROLLER_PORT")
    say(postgres.start(settings))
    say(kafka.start(settings, say))
    provision_servers(settings, say)


def provision_servers(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Topics, databases, schemas and credentials on servers run elsewhere (compose, or your
    own): no server is started; each is waited for up to MDMBUS_START_TIMEOUT."""
    files = credentials(settings)
    say(f"credentials: CA and certificates in {settings.pki_dir}, token issuer in "
        f"{settings.issuer_dir} ({len(files)} files)")
    created = asyncio.run(provisioning.ensure_databases(settings, settings.start_timeout_s))
    say(f"databases: {'created ' + ', '.join(created) if created else 'all present'}")
    asyncio.run(provisioning.ensure_schemas(settings))
    say("schemas: applied")
    created = asyncio.run(provisioning.ensure_topics(settings))
    say(f"topics: {'created ' + ', '.join(created) if created else 'all present, configs applied'}")


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stops both servers; stale pid files from a crash are cleaned, not an error."""
    say(kafka.stop(settings))
    say(postgres.stop(settings))


def status(settings: Settings, say: Callable[[str], None] = print) -> bool:
    """Prints what runs where; true when both servers run."""
    kafka_up, kafka_line = kafka.describe(settings)
    pg_up, pg_line = postgres.describe(settings)
    say(f"state     {settings.state_dir}  (MDMBUS_STATE_DIR)")
    say(kafka_line)
    say(pg_line)
    pki = Pki(settings.pki_dir)
    if pki.ca_file.exists():
        say(f"tls       CA {pki.ca_file}  gateway {pki.cert_file('gateway')} "
            f"{pki.key_file('gateway')} (keys 0600)")
        say(f"tokens    JWKS {settings.jwks_source}  issuer key {issuer(settings).key_file}  "
            f"(`mdmbus token --tenant ID --role connector`)")
        say("gateways  " + "  ".join(f"{r} {settings.gateway_url(r)}"
                                     for r in settings.gateway_ports))
    if kafka_up and pg_up:
        say(f"topics    {', '.join(name for name, _ in all_topics())}")
        say(f"databases {', '.join(all_databases())}")
    return kafka_up and pg_up
