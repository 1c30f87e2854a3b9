"""The data-residency regions and the database that holds each region's store.

One PostgreSQL database per region on the embedded stack (one server per region under compose),
plus the Configuration Manager side's own database.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

__all__ = ["REGIONS", "CM_DATABASE", "DIRECTORY_DATABASE", "region_database", "all_databases",
           "database_kind",
           "country_regions", "region_of_country", "parse_regions", "UnknownCountry"]

_COUNTRY_FILE = Path(str(files("mdmbus") / "data" / "country_regions.csv"))

#: Residency regions: North America, Europe, Asia-Pacific.
REGIONS: tuple[str, ...] = ("na", "eu", "ap")

#: The on-premises Configuration Manager database that relayed data is written into.
CM_DATABASE = "mdmbus_cm"

#: The global tenant directory: tenant id -> region, country, lifecycle state, nothing else.
DIRECTORY_DATABASE = "mdmbus_directory"


def region_database(region: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; known regions: {', '.join(REGIONS)}")
    return f"mdmbus_{region}"


def all_databases() -> tuple[str, ...]:
    return tuple(region_database(r) for r in REGIONS) + (DIRECTORY_DATABASE, CM_DATABASE)


def database_kind(database: str) -> str:
    """"region", "directory" or "cm": which schema ``database`` has."""
    if database == CM_DATABASE:
        return "cm"
    if database == DIRECTORY_DATABASE:
        return "directory"
    if database in {region_database(r) for r in REGIONS}:
        return "region"
    raise ValueError(f"{database!r} is not an mdmbus database")


def parse_regions(text: str) -> tuple[str, ...]:
    """``all``, one region, or a comma-separated list, as given on a command line."""
    if text == "all":
        return REGIONS
    wanted = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [r for r in wanted if r not in REGIONS]
    if unknown or not wanted:
        raise ValueError(f"unknown region {', '.join(unknown) or repr(text)}: give one of "
                         f"{', '.join(REGIONS)}, a comma-separated list, or all")
    return wanted


class UnknownCountry(ValueError):
    """The onboarding country is not in mdmbus/data/country_regions.csv."""


@lru_cache(maxsize=1)
def country_regions() -> Mapping[str, str]:
    """The country -> region table, read once from its data file."""
    with open(_COUNTRY_FILE, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        table = {row["country"]: row["region"] for row in rows}
    unknown = set(table.values()) - set(REGIONS)
    if unknown:
        raise ValueError(f"{_COUNTRY_FILE} names regions {sorted(unknown)} not in {REGIONS}")
    return MappingProxyType(table)


def region_of_country(country: str) -> str:
    try:
        return country_regions()[country.upper()]
    except KeyError:
        raise UnknownCountry(f"country {country!r} is not an ISO 3166 alpha-2 code mdmbus maps "
                             f"to a region (see {_COUNTRY_FILE.name})") from None
