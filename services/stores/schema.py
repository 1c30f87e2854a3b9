"""The DDL of every mdmbus database, applied idempotently by provisioning (``mdmbus stack up``,
``mdmbus provision``), never by the processes: they run without the right to change tables."""

from __future__ import annotations

from importlib.resources import files


from mdmbus.regions import database_kind
from mdmbus.services.stores.pools import Connection

__all__ = ["ensure_schema", "schema_file", "schema_files"]

_LOCK_KEY = 0x6D646D62  # "mdmb": one advisory lock for all mdmbus migrations


def schema_file(database: str) -> str:
    """The SQL file that defines ``database``."""
    return f"{database_kind(database)}_schema.sql"


def schema_files(database: str) -> list[str]:
    """Every SQL file of ``database``, in the order they apply (later steps after the first;
    the owner's functions last, after every column they use)."""
    extra = {"region": ["region_crypto.sql", "region_functions.sql"]}.get(
        database_kind(database), [])
    return [schema_file(database), *extra]


async def ensure_schema(conn: Connection, database: str,
                        owner: str | None = None) -> None:
    """Creates what is missing in ``database`` (the connection's own database), as ``owner``
    (a role the connection may become: what it creates belongs to that role)."""
    sql = "\n".join(files(__package__).joinpath(name).read_text(encoding="utf-8")
                    for name in schema_files(database))
    async with conn.transaction():
        # Two provisioners creating the same table at once would collide in the catalogue.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        if owner is not None:
            await conn.execute(f'SET LOCAL ROLE "{owner}"')
        await conn.execute(sql)
