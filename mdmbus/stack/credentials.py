"""The embedded stack's passwords: one per Kafka principal and per PostgreSQL role of
mdmbus/identities.py that logs in by password (operators' roles), and the PostgreSQL
superuser's, generated once into <state>/credentials/{kafka,pg}/<name> (mode 0600, directories
0700); and the client certificates the PostgreSQL service roles log in with (pki/pg-<role>).

A password given in the environment (MDMBUS_PASSWORD_<KIND>_<NAME>, compose's .env) wins over
the file, and no file is written for it. Provisioning sets each password on the servers, so a
changed file or variable takes effect at the next `mdmbus stack up` / `mdmbus provision`.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from mdmbus.identities import CERTIFICATE, certificate_name, kafka_principals, pg_roles
from mdmbus.settings import Settings
from mdmbus.stack.pki import Pki, write_private

__all__ = ["ensure_passwords", "ensure_pg_certificates", "identities"]


def identities(settings: Settings) -> list[tuple[str, str]]:
    """(kind, name) of every identity with a password: the Kafka principals, the PostgreSQL
    login roles and the PostgreSQL superuser that provisions them."""
    return ([("kafka", p.name) for p in kafka_principals()]
            + [("pg", r.name) for r in pg_roles() if r.login != CERTIFICATE]
            + [("pg", settings.pg_user)])


def ensure_pg_certificates(settings: Settings) -> list[Path]:
    """A client certificate (and key, 0600) of the stack's CA for every PostgreSQL role that
    logs in by certificate, its common name the role; a password file such a role had (from
    an older mdmbus) is removed, since no password of it is accepted any more."""
    pki = Pki(settings.pki_dir)
    out: list[Path] = []
    for role in pg_roles():
        if role.login != CERTIFICATE:
            continue
        out += pki.ensure(certificate_name(role.name), server=False, common_name=role.name)
        (settings.credentials_dir / "pg" / role.name).unlink(missing_ok=True)
    return out


def ensure_passwords(settings: Settings) -> list[Path]:
    """Generates the passwords that are neither in the environment nor on disk; returns the
    files written."""
    written = []
    for kind, name in identities(settings):
        variable = f"MDMBUS_PASSWORD_{kind}_{name}".upper().replace("-", "_")
        if kind == "pg" and name == settings.pg_user and settings.pg_password:
            continue
        path = settings.credentials_dir / kind / name
        if settings.passwords.get(variable) or path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.credentials_dir.chmod(0o700)
        write_private(path, (secrets.token_urlsafe(24) + "\n").encode())
        written.append(path)
    return written
