"""The rules' pure decisions, tested where they are made: country -> region for the whole
table, where a record may be stored, what a refusal keeps, and every deadline."""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from importlib.resources import files

import pytest

from mdmbus.categories import Category, category_of
from mdmbus.regions import REGIONS, UnknownCountry, country_regions, parse_regions, region_of_country
from mdmbus.services.rules.dead_letters import dead_letter_deadline
from mdmbus.services.rules.refusals import Refusal, keeps_body, message
from mdmbus.services.rules.residency import residency_problem
from mdmbus.services.rules.retention import retention_dates
from mdmbus.services.rules.session_expiry import (COMMAND_FALLBACK, SessionEvent,
                                                   session_expiry)

T0 = dt.datetime(2027, 1, 1, 12, tzinfo=dt.timezone.utc)


def _table() -> dict[str, str]:
    text = files("mdmbus").joinpath("data/country_regions.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {row["country"]: row["region"] for row in rows}


@pytest.mark.parametrize("country, region", sorted(_table().items()))
def test_every_country_of_the_table_maps_to_its_region(country: str, region: str) -> None:
    assert region in REGIONS
    assert region_of_country(country) == region
    assert region_of_country(country.lower()) == region


def test_the_table_covers_every_region_and_well_known_countries() -> None:
    table = country_regions()
    assert set(table.values()) == set(REGIONS)
    assert (table["US"], table["CA"], table["DE"], table["FR"], table["JP"], table["AU"]) == \
        ("na", "na", "eu", "eu", "ap", "ap")
    assert len(table) == len(_table()) > 100


@pytest.mark.parametrize("country", ["ZZ", "", "XX", "USA", "E", "DE "])
def test_an_unknown_country_maps_to_no_region(country: str) -> None:
    with pytest.raises(UnknownCountry, match="not an ISO 3166 alpha-2 code mdmbus maps"):
        region_of_country(country)


def test_region_arguments() -> None:
    assert parse_regions("all") == REGIONS
    assert parse_regions("eu") == ("eu",)
    assert parse_regions("ap, na,ap") == ("ap", "na")
    for bad in ("", "mars", "eu,mars", ","):
        with pytest.raises(ValueError):
            parse_regions(bad)


@pytest.mark.parametrize("topic_region, tenant_region, refusal", [
    ("eu", "eu", None), ("eu", "na", Refusal.WRONG_REGION), ("ap", "eu", Refusal.WRONG_REGION),
    ("na", None, Refusal.TENANT_NOT_ONBOARDED)])
def test_where_a_record_may_be_stored(topic_region, tenant_region, refusal) -> None:
    assert residency_problem(topic_region, tenant_region) == refusal


def test_what_a_refusal_keeps() -> None:
    # Never a body of a deleted tenant (rule 7), nor in a region the tenant is not in (rule 1).
    assert not keeps_body(Refusal.TENANT_DELETED) and not keeps_body(Refusal.WRONG_REGION)
    for reason in set(Refusal) - {Refusal.TENANT_DELETED, Refusal.WRONG_REGION}:
        assert keeps_body(reason), reason
    for reason in ("private_key_material", "oversized", "garbage", "wrong_key"):
        assert keeps_body(reason)
    for reason in Refusal:
        text = message(reason)
        assert text and "{" not in text, reason
    assert all(r.value.isidentifier() and r.value.islower() for r in Refusal)


def test_retention_is_90_then_30_days() -> None:
    read_only, purge = retention_dates(T0, 90, 30)
    assert read_only - T0 == dt.timedelta(days=90)
    assert purge - read_only == dt.timedelta(days=30)
    assert retention_dates(T0, 1.5, 0.25) == (T0 + dt.timedelta(days=1.5),
                                               T0 + dt.timedelta(days=1.75))


def _event(kind: str, expires: dt.datetime, at: dt.datetime) -> SessionEvent:
    return SessionEvent(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), kind, expires, at)


def test_a_session_expires_as_announced_while_open_and_at_its_end_once_closed() -> None:
    later = T0 + dt.timedelta(hours=8)
    assert session_expiry(_event("START", later, T0)) == later
    assert session_expiry(_event("HEARTBEAT", later, T0)) == later
    assert session_expiry(_event("END", later, T0)) == T0
    assert session_expiry(_event("EXPIRED", later, T0)) == T0
    # An end announced after an earlier expiry does not extend the session.
    assert session_expiry(_event("END", T0, later)) == T0


def test_a_commands_fallback_is_a_quarter_hour() -> None:
    """(The deadline itself is SQL, tested where it runs: tests/integration/test_command_deadline.py.)"""
    assert COMMAND_FALLBACK == dt.timedelta(minutes=15)


def test_a_dead_letter_is_kept_its_days() -> None:
    assert dead_letter_deadline(T0, 7) == T0 + dt.timedelta(days=7)
    assert dead_letter_deadline(T0, 0.5) == T0 + dt.timedelta(hours=12)


@pytest.mark.parametrize("kind, category", [
    ("U1", Category.UPLOAD), ("U14", Category.UPLOAD), ("R1", Category.RELAY),
    ("R6", Category.RELAY), ("inventory_cache", Category.INVENTORY_CACHE),
    ("device_command", Category.COMMAND), ("device_command_result", Category.COMMAND)])
def test_category_of_each_kind(kind: str, category: Category) -> None:
    assert category_of(kind) is category


@pytest.mark.parametrize("kind", ["device_session", "tenant_onboarded", "Ux", "R", "U15x"])
def test_kinds_that_are_not_stored_as_rows_have_no_category(kind: str) -> None:
    with pytest.raises(ValueError):
        category_of(kind)


#: Where the residency table departs from the continent of a country's first time zone: the
#: Middle East is served from the EU region (EMEA), Iceland and Mauritius too, the Maldives
#: from Asia-Pacific. Anything else follows its continent.
_NOT_BY_CONTINENT = {
    **{c: "eu" for c in ("AE", "AM", "AZ", "BH", "CY", "GE", "IL", "IQ", "IR", "JO", "KW", "LB",
                         "OM", "PS", "QA", "SA", "SY", "YE")},
    "IS": "eu", "MU": "eu", "MV": "ap",
}
_BY_CONTINENT = {"America": "na", "Europe": "eu", "Africa": "eu", "Asia": "ap",
                 "Australia": "ap", "Pacific": "ap"}


def _first_time_zones() -> dict[str, str]:
    """Country -> the first zone the IANA time zone database lists for it (zone.tab of the
    tzdata package): a source independent of mdmbus's table."""
    import tzdata
    out: dict[str, str] = {}
    text = files(tzdata).joinpath("zoneinfo/zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            country, _, zone = line.split("\t")[:3]
            out.setdefault(country, zone)
    return out


def test_every_country_is_in_the_region_of_its_continent_or_a_listed_exception() -> None:
    """Checked against the time zone database, not against mdmbus's own file: a country moved
    to another region by mistake fails here."""
    zones = _first_time_zones()
    wrong = {}
    for country, region in country_regions().items():
        expected = _NOT_BY_CONTINENT.get(country) or _BY_CONTINENT.get(
            zones[country].split("/")[0])
        if region != expected:
            wrong[country] = (region, expected, zones[country])
    assert not wrong, f"country -> (table's region, expected, first time zone): {wrong}"
    assert set(_NOT_BY_CONTINENT) <= set(country_regions())
