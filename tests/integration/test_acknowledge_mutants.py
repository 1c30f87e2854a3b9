"""Mutants of the acknowledgement's SQL (``acknowledge_relay`` in
services/stores/region_functions.sql), which mutmut cannot make: each one, applied to the real
PostgreSQL region store in a transaction that is rolled back, must fail the check below; the
function as shipped must pass it.

The check is the rule 2 claim at the store: acknowledging ids deletes the caller's held relay
records among them and nothing else (no upload, command, inventory cache entry, another
tenant's relay record, or one of the caller's relay records it did not name), and answers
exactly the ids it deleted (a tombstone, already deleted, is not deleted again). The oracle is
the rows as inserted, compared column by column, not the function.
"""

from __future__ import annotations

import datetime as dt
import uuid
from importlib.resources import files

import pytest

from mdmbus.connections import pg_connect
from mdmbus.regions import region_database

pytestmark = pytest.mark.integration

SQL = files("mdmbus.services.stores").joinpath("region_functions.sql").read_text()
_START = SQL.index("CREATE OR REPLACE FUNCTION public.acknowledge_relay")
ACKNOWLEDGE = SQL[_START:SQL.index("$$;", _START) + 3]

#: name -> (text in acknowledge_relay, what replaces it): each is a way the rule could break.
MUTANTS = {
    # the breach issue 19 found: the caller's rows of any category deleted
    "any-category": [("AND d.category = 'relay' AND d.has_body", "AND d.has_body"),
                     ("AND r.category = 'relay' AND r.has_body", "AND r.has_body")],
    "any-tenant": [("WHERE d.tenant_id = p_tenant AND d.record_id",
                    "WHERE d.record_id")],
    "tombstones-again": [("AND d.category = 'relay' AND d.has_body",
                          "AND d.category = 'relay'"),
                         ("AND r.category = 'relay' AND r.has_body", "AND r.category = 'relay'")],
    "ids-not-named": [("d.record_id = ANY (p_record_ids)", "NOT d.record_id = ANY (p_record_ids)")],
    "body-kept": [("SET body = NULL, wrapped_key = NULL", "SET wrapped_key = NULL")],
    "session-kept": [("session_id = NULL, deadline = NULL", "deadline = NULL")],
    "deadline-kept": [("deadline = NULL, deadline_rule = NULL", "deadline_rule = NULL")],
}


def _mutated(changes: list[tuple[str, str]]) -> str:
    text = ACKNOWLEDGE
    for before, after in changes:
        assert text.count(before) == 1, f"{before!r} is not once in acknowledge_relay"
        text = text.replace(before, after)
    return text


async def _plant(conn, now: dt.datetime) -> dict[str, list[uuid.UUID]]:
    """Rows of two tenants, by what the acknowledgement may do with them."""
    a, b = uuid.uuid4(), uuid.uuid4()
    groups: dict[str, list[tuple[uuid.UUID, str, str, bool]]] = {
        # (tenant, kind, category, held)
        "deleted": [(a, "R1", "relay", True), (a, "R2", "relay", True)],
        "named_kept": [(a, "U1", "upload", True), (a, "device_command", "command", True),
                       (a, "inventory_cache", "inventory_cache", True),
                       (b, "R1", "relay", True), (a, "R4", "relay", False)],
        "unnamed": [(a, "R1", "relay", True)],
    }
    ids: dict[str, list[uuid.UUID]] = {}
    for group, rows in groups.items():
        ids[group] = []
        for tenant, kind, category, held in rows:
            record_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO records (record_id, tenant_id, kind, category, device_id,"
                " session_id, event_time, stored_at, deadline, deadline_rule, body)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
                record_id, tenant, kind, category, uuid.uuid4(), uuid.uuid4(), now,
                now + dt.timedelta(days=1), "delete_after_download" if held else None,
                b"body of " + str(record_id).encode() if held else None)
            ids[group].append(record_id)
    ids["tenant"] = [a]
    return ids


async def _rows(conn, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple]:
    rows = await conn.fetch(
        "SELECT record_id, tenant_id, kind, category, device_id, session_id, deadline,"
        " deadline_rule, body FROM records WHERE record_id = ANY($1::uuid[])", record_ids)
    return {r["record_id"]: tuple(r) for r in rows}


async def _problems(conn) -> list[str]:
    """What is wrong with acknowledge_relay as it is now defined in ``conn``'s transaction."""
    ids = await _plant(conn, dt.datetime.now(dt.timezone.utc))
    named = ids["deleted"] + ids["named_kept"]
    kept = ids["named_kept"] + ids["unnamed"]
    before = await _rows(conn, kept)
    answered = await conn.fetch("SELECT acknowledge_relay($1, $2::uuid[])",
                                ids["tenant"][0], named)
    problems = []
    if sorted(r[0] for r in answered) != sorted(ids["deleted"]):
        problems.append("it answers other ids than the caller's held relay records it named")
    if await _rows(conn, kept) != before:
        problems.append("it changed a row it must leave alone")
    left = await _rows(conn, ids["deleted"])
    if sorted(left) != sorted(ids["deleted"]):
        problems.append("an acknowledged row's id is not kept (its tombstone)")
    if any(row[4:] != (None,) * 5 for row in left.values()):
        problems.append("an acknowledged row keeps data (device, session, deadline, body)")
    return problems


@pytest.fixture
async def conn(stack):
    connection = await pg_connect(stack, region_database("eu"))
    try:
        yield connection
    finally:
        await connection.close()


async def test_the_acknowledgement_as_shipped_passes_the_check(conn):
    transaction = conn.transaction()
    await transaction.start()
    try:
        assert await _problems(conn) == []
    finally:
        await transaction.rollback()


@pytest.mark.parametrize("name", sorted(MUTANTS))
async def test_each_mutant_of_the_acknowledgement_fails_the_check(conn, name):
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(_mutated(MUTANTS[name]))
        assert await _problems(conn) != [], f"the mutant {name} of acknowledge_relay survives"
    finally:
        await transaction.rollback()  # the function as shipped is back
    # and no mutant outlived its transaction
    current = await conn.fetchval(
        "SELECT prosrc FROM pg_proc WHERE proname = 'acknowledge_relay'")
    assert current.strip() == ACKNOWLEDGE.split("$$")[1].strip()
