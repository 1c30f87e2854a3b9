"""`mdmbus stack up | down | status`: both servers, then what the pipeline needs in them."""

from __future__ import annotations

import asyncio
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from mdmbus.identities import ADMIN
from mdmbus.regions import all_databases
from mdmbus.settings import Settings
from mdmbus.stack import kafka, postgres
from mdmbus.stack import provision as provisioning
from mdmbus.stack.credentials import ensure_passwords, ensure_pg_certificates
from mdmbus.stack.pki import Pki, write_private
from mdmbus.stack.processes import ensure_port_free
from mdmbus.stack.token_issuer import TokenIssuer
from mdmbus.topics import all_topics

__all__ = ["up", "down", "status", "provision_servers", "credentials", "issuer"]


def issuer(settings: Settings) -> TokenIssuer:
    """The embedded stack's token issuer (its key and JWKS in <state>/issuer)."""
    return TokenIssuer(settings.issuer_dir, settings.token_issuer, settings.token_audience)


def credentials(settings: Settings) -> list[str]:
    """Creates what the embedded stack's TLS, logins and tokens need, once: the CA, the
    servers' certificates (gateway, broker, PostgreSQL), the provisioning admin's client
    certificate, a password per identity, the token issuer's key; returns the files made."""
    pki = Pki(settings.pki_dir)
    made = []
    # The broker's certificate is also its client certificate (to its controller, to other
    # brokers); the gateway's and PostgreSQL's authenticate servers only.
    for name, server, client in (("gateway", True, False), ("broker", True, True),
                                 ("postgres", True, False), (ADMIN, False, True)):
        cert, key = pki.ensure(name, server=server, client=client,
                               hostnames=settings.tls_hostnames)
        made += [str(cert), str(key)]
    store = kafka.keystore(settings)
    chain = Pki(settings.pki_dir).key_file("broker").read_bytes() + \
        pki.cert_file("broker").read_bytes()
    if not store.exists() or store.read_bytes() != chain:
        write_private(store, chain)
    made.append(str(store))
    made += [str(p) for p in ensure_passwords(settings)]
    made += [str(p) for p in ensure_pg_certificates(settings)]
    issuer(settings).ensure()
    return [str(pki.ca_file), *made, str(settings.issuer_dir / "jwks.json")]


@contextmanager
def _private_umask() -> Iterator[None]:
    """umask 077 while the stack is made: what it creates, and the servers it starts, are
    their owner's alone (the ``mdmbus`` command sets it anyway; a library caller may not)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _tighten(root: Path) -> None:
    """Takes every right of group and others from what is under ``root`` (a state directory
    made by an older mdmbus, with 0755 directories and 0644 files). Files that vanish or
    belong to someone else meanwhile are skipped."""
    for directory, dirs, names in os.walk(root):
        for path in [directory, *(os.path.join(directory, n) for n in dirs + names)]:
            try:
                mode = os.lstat(path).st_mode
                if mode & 0o077 and not os.path.islink(path):
                    os.chmod(path, mode & 0o7700)
            except (FileNotFoundError, PermissionError):
                continue


def up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Idempotent: what runs is left running, what is missing is started or created."""
    with _private_umask():
        _up(settings, say)


def _up(settings: Settings, say: Callable[[str], None]) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(settings.state_dir)
    pg_root = postgres.pg_paths(settings).root
    if not pg_root.is_relative_to(settings.state_dir):
        _tighten(pg_root)
    # Check every port before starting anything, so a clash leaves nothing half-started.
    if not postgres.running(postgres.pg_paths(settings)):
        ensure_port_free(settings.pg_port, "PostgreSQL", "MDMBUS_PG_PORT")
    if not settings.kafka_external and kafka.running_pid(settings) is None:
        ensure_port_free(settings.kafka_port, "Kafka", "MDMBUS_KAFKA_PORT")
        ensure_port_free(settings.kafka_controller_port, "the Kafka controller",
                         "MDMBUS_KAFKA_CONTROLLER_PORT")
        ensure_port_free(settings.kafka_mtls_port, "the Kafka mutual-TLS listener",
                         "MDMBUS_KAFKA_BROKER_PORT")
    credentials(settings)
    say(f"credentials: certificates in {settings.pki_dir}, passwords in "
        f"{settings.credentials_dir}, token issuer in {settings.issuer_dir}")
    say(postgres.start(settings))
    say(kafka.start(settings, say))
    provision_servers(settings, say, made_credentials=True)


def provision_servers(settings: Settings, say: Callable[[str], None] = print,
                      made_credentials: bool = False) -> None:
    """Topics, databases, schemas, identities and their rights on servers run elsewhere
    (compose, or your own) or just started: no server is started here; each is waited for up
    to MDMBUS_START_TIMEOUT."""
    if not made_credentials:
        with _private_umask():
            credentials(settings)
        say(f"credentials: certificates in {settings.pki_dir}, passwords in "
            f"{settings.credentials_dir}, token issuer in {settings.issuer_dir}")
    created = asyncio.run(provisioning.ensure_databases(settings, settings.start_timeout_s))
    say(f"databases: {'created ' + ', '.join(created) if created else 'all present'}")
    asyncio.run(provisioning.ensure_schemas(settings))
    say("schemas: applied")
    say("database identities: " + asyncio.run(provisioning.ensure_pg_identities(settings)))
    created = asyncio.run(provisioning.ensure_topics(settings))
    say(f"topics: {'created ' + ', '.join(created) if created else 'all present, configs applied'}")
    say("kafka identities: " + asyncio.run(provisioning.ensure_kafka_identities(settings)))


def down(settings: Settings, say: Callable[[str], None] = print, purge: bool = False) -> None:
    """Stops both servers; stale pid files from a crash are cleaned, not an error. With
    ``purge``, everything the stack made goes too: the state directory and the PostgreSQL
    cluster wherever it lives (/var/tmp/mdmbus-pg-<hash> when run as root), so nothing of a
    throw-away stack (the tests') outlives it and the next one starts clean."""
    say(kafka.stop(settings))
    say(postgres.stop(settings))
    if purge:
        pointer = settings.state_dir / "postgres.location"
        if pointer.exists():
            outside = Path(pointer.read_text().strip())
            if outside.name.startswith("mdmbus-pg-") and not outside.is_relative_to(
                    settings.state_dir):
                shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
        say(f"purged: {settings.state_dir}")


def status(settings: Settings, say: Callable[[str], None] = print) -> bool:
    """Prints what runs where; true when both servers run."""
    kafka_up, kafka_line = kafka.describe(settings)
    pg_up, pg_line = postgres.describe(settings)
    say(f"state     {settings.state_dir}  (MDMBUS_STATE_DIR)")
    say(kafka_line)
    say(pg_line)
    pki = Pki(settings.pki_dir)
    if pki.ca_file.exists():
        say(f"tls       CA {pki.ca_file}; certificates and keys (0600) in {pki.root}")
        say(f"logins    passwords (0600) in {settings.credentials_dir}/{{kafka,pg}}/<name>; "
            f"outside clients: `mdmbus stack client-config --principal NAME`")
        say(f"tokens    JWKS {settings.jwks_source}  issuer key {issuer(settings).key_file}  "
            f"(`mdmbus token --tenant ID --role connector`)")
        say("gateways  " + "  ".join(f"{r} {settings.gateway_url(r)}"
                                     for r in settings.gateway_ports))
    if kafka_up and pg_up:
        say(f"topics    {', '.join(name for name, _ in all_topics())}")
        say(f"databases {', '.join(all_databases())}")
    return kafka_up and pg_up
