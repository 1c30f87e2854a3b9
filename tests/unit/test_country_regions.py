"""Country -> residency region (mdmbus.regions): the table, its lookups and its refusals."""

from __future__ import annotations

import pytest

from mdmbus import regions
from mdmbus.regions import (REGIONS, UnknownCountry, country_regions, region_database,
                            region_of_country)


@pytest.mark.parametrize("country, region", [("DE", "eu"), ("FR", "eu"), ("US", "na"),
                                             ("CA", "na"), ("JP", "ap"), ("AU", "ap"),
                                             ("de", "eu")])
def test_a_country_maps_to_its_region(country: str, region: str) -> None:
    assert region_of_country(country) == region


@pytest.mark.parametrize("country", ["XX", "DEU", ""])
def test_an_unknown_country_is_refused_by_name(country: str) -> None:
    with pytest.raises(UnknownCountry) as caught:
        region_of_country(country)
    assert str(caught.value) == (f"country {country!r} is not an ISO 3166 alpha-2 code mdmbus "
                                 "maps to a region (see country_regions.csv)")


def test_every_country_of_the_table_has_a_known_region() -> None:
    table = country_regions()
    assert len(table) > 100 and set(table.values()) == set(REGIONS)
    assert all(len(c) == 2 and c.isupper() for c in table)


def test_a_table_naming_an_unknown_region_is_refused(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "country_regions.csv"
    bad.write_text("# a comment\ncountry,region\nDE,eu\nXK,mars\n")
    monkeypatch.setattr(regions, "_COUNTRY_FILE", bad)
    country_regions.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"names regions \['mars'\] not in"):
            country_regions()
    finally:
        monkeypatch.undo()
        country_regions.cache_clear()


def test_region_databases() -> None:
    assert [region_database(r) for r in REGIONS] == ["mdmbus_na", "mdmbus_eu", "mdmbus_ap"]
    with pytest.raises(ValueError) as caught:
        region_database("mars")
    assert str(caught.value) == "unknown region 'mars'; known regions: na, eu, ap"


@pytest.mark.parametrize("database, kind", [("mdmbus_cm", "cm"), ("mdmbus_directory", "directory"),
                                            ("mdmbus_na", "region"), ("mdmbus_eu", "region"),
                                            ("mdmbus_ap", "region")])
def test_each_database_has_one_kind_of_schema(database: str, kind: str) -> None:
    assert regions.database_kind(database) == kind


def test_a_database_that_is_not_mdmbus_s_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        regions.database_kind("postgres")
    assert str(caught.value) == "'postgres' is not an mdmbus database"


@pytest.mark.parametrize("text, wanted", [("all", REGIONS), ("eu", ("eu",)),
                                          ("ap, na,ap", ("ap", "na")), ("na,", ("na",))])
def test_regions_given_on_a_command_line(text: str, wanted: tuple) -> None:
    assert regions.parse_regions(text) == wanted


@pytest.mark.parametrize("text, named", [("mars", "mars"), ("eu,mars,venus", "mars, venus"),
                                         ("", "''"), (" , ", "' , '")])
def test_unknown_regions_on_a_command_line_are_named(text: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        regions.parse_regions(text)
    assert str(caught.value) == (f"unknown region {named}: give one of na, eu, ap, a "
                                 "comma-separated list, or all")
