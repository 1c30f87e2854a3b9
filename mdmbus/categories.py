"""The categories of stored data: the ``category`` column of every store row, the ``category``
label of every metric, the unit the deletion audit counts in. One enum, so a name cannot be
spelt two ways."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Category", "category_of"]


class Category(StrEnum):
    #: U1-U14, stored in the tenant's region until its purge.
    UPLOAD = "upload"
    #: R1-R6, stored until CM has downloaded and acknowledged them.
    RELAY = "relay"
    #: Inventory cache of Windows Phone and Android devices, until the device un-enrolls.
    INVENTORY_CACHE = "inventory_cache"
    #: Temporary device commands and results, until their session expires.
    COMMAND = "command"
    #: Active device sessions (the deadlines of commands follow them).
    SESSION = "session"
    #: A refused record's body, kept for operators until its deadline.
    DEAD_LETTER = "dead_letter"
    #: The tenant row itself (deleted last, by a purge).
    TENANT = "tenant"


#: Categories of rows in the ``records`` table.
RECORD_CATEGORIES = (Category.UPLOAD, Category.RELAY, Category.INVENTORY_CACHE, Category.COMMAND)


def category_of(kind: str) -> Category:
    """The category a record of ``kind`` is stored under."""
    if kind.startswith("U") and kind[1:].isdigit():
        return Category.UPLOAD
    if kind.startswith("R") and kind[1:].isdigit():
        return Category.RELAY
    if kind == "inventory_cache":
        return Category.INVENTORY_CACHE
    if kind in ("device_command", "device_command_result"):
        return Category.COMMAND
    raise ValueError(f"records of kind {kind!r} are not stored as rows")
