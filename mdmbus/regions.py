"""The data-residency regions and the database that holds each region's store.

One PostgreSQL database per region on the embedded stack (one server per region under compose),
plus the Configuration Manager side's own database.
"""

from __future__ import annotations

__all__ = ["REGIONS", "CM_DATABASE", "region_database", "all_databases"]

#: Residency regions: North America, Europe, Asia-Pacific.
REGIONS: tuple[str, ...] = ("na", "eu", "ap")

#: The on-premises Configuration Manager database that relayed data is written into.
CM_DATABASE = "mdmbus_cm"


def region_database(region: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; known regions: {', '.join(REGIONS)}")
    return f"mdmbus_{region}"


def all_databases() -> tuple[str, ...]:
    return tuple(region_database(r) for r in REGIONS) + (CM_DATABASE,)
