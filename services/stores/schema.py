"""Applies the store DDL, idempotently and safely when several processes start at once."""

from __future__ import annotations

from importlib.resources import files

import asyncpg

__all__ = ["ensure_region_schema", "ensure_cm_schema"]

_LOCK_KEY = 0x6D646D62  # "mdmb": one advisory lock for all mdmbus migrations


async def _apply(conn: asyncpg.Connection, sql_file: str) -> None:
    sql = files(__package__).joinpath(sql_file).read_text(encoding="utf-8")
    async with conn.transaction():
        # Two processes creating the same table at once would collide in the catalogue.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(sql)


async def ensure_region_schema(conn: asyncpg.Connection) -> None:
    await _apply(conn, "region_schema.sql")


async def ensure_cm_schema(conn: asyncpg.Connection) -> None:
    await _apply(conn, "cm_schema.sql")
