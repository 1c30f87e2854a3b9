"""Rule 3's deadline, evaluated by PostgreSQL itself: the one SQL definition of a command's
deadline (services/rules/session_expiry.py ``command_deadline_sql``), against hand-computed
times, and both statements that set a deadline built from it."""

from __future__ import annotations

import datetime as dt

import pytest

from mdmbus.connections import pg_connect
from mdmbus.regions import region_database
from mdmbus.services.rules import session_expiry
from mdmbus.services.rules.session_expiry import COMMAND_FALLBACK, command_deadline_sql
from mdmbus.services.stores import records

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
EXPIRES = T0 + dt.timedelta(hours=2)
FALLBACK = T0 + COMMAND_FALLBACK

CASES = [  # (session expires at, fallback, grace s) -> deadline, computed by hand
    ((EXPIRES, FALLBACK, 0.0), EXPIRES),
    ((EXPIRES, FALLBACK, 90.0), EXPIRES + dt.timedelta(seconds=90)),
    ((EXPIRES, None, 3600.0), EXPIRES + dt.timedelta(hours=1)),
    # a session that ends before the fallback would: its expiry, not the later fallback
    ((T0 + dt.timedelta(minutes=5), FALLBACK, 0.0), T0 + dt.timedelta(minutes=5)),
    ((None, FALLBACK, 0.0), T0 + dt.timedelta(minutes=15)),
    ((None, FALLBACK, 30.0), T0 + dt.timedelta(minutes=15, seconds=30)),
    ((None, None, 30.0), None),
]


async def test_the_store_computes_a_commands_deadline_from_its_session(stack):
    conn = await pg_connect(stack, region_database("eu"))
    try:
        expression = command_deadline_sql("$1::timestamptz", "$2::timestamptz", "$3::float8")
        for args, expected in CASES:
            assert await conn.fetchval(f"SELECT {expression}", *args) == expected, args
    finally:
        await conn.close()


def test_both_statements_that_set_a_deadline_use_the_one_definition():
    assert command_deadline_sql("s.expires_at", "i.deadline", "$2") in records._INSERT
    assert command_deadline_sql("s.expires_at", "NULL", "$3") in session_expiry._MOVE_DEADLINES


#: Mutants of the deadline's SQL, which mutmut cannot make (its tests run in PostgreSQL): name
#: -> (text in the shipped expression, what replaces it). Each must fail CASES.
MUTANTS = {
    "fallback-before-session": [("COALESCE($1::timestamptz, $2::timestamptz)",
                                 "COALESCE($2::timestamptz, $1::timestamptz)")],
    "session-ignored": [("COALESCE($1::timestamptz, $2::timestamptz)", "$2::timestamptz")],
    "fallback-ignored": [("COALESCE($1::timestamptz, $2::timestamptz)", "$1::timestamptz")],
    "no-grace": [(" + make_interval(secs => $3::float8)", "")],
    "grace-subtracted": [(" + make_interval(", " - make_interval(")],
    "grace-a-unit-off": [("secs => $3::float8", "secs => $3::float8 / 60")],
    "the-latest-of-the-two": [("COALESCE(", "GREATEST(")],
}


async def _wrong(conn, expression: str) -> list[tuple]:
    """The cases ``expression`` gets wrong (every parameter typed, used or not)."""
    query = (f"SELECT {expression} FROM (VALUES ($1::timestamptz, $2::timestamptz, "
             "$3::float8)) AS given (expires, fallback, grace)")
    return [args for args, expected in CASES if await conn.fetchval(query, *args) != expected]


async def test_each_mutant_of_the_deadline_sql_fails_the_hand_computed_cases(stack):
    shipped = command_deadline_sql("$1::timestamptz", "$2::timestamptz", "$3::float8")
    conn = await pg_connect(stack, region_database("eu"))
    try:
        assert await _wrong(conn, shipped) == []
        for name, changes in MUTANTS.items():
            mutated = shipped
            for before, after in changes:
                assert mutated.count(before) == 1, (name, before, shipped)
                mutated = mutated.replace(before, after)
            assert await _wrong(conn, mutated), f"the mutant {name} of the deadline survives"
    finally:
        await conn.close()
