"""A pytest plugin for mutation runs only (``pytest_add_cli_args`` in pyproject.toml's
[tool.mutmut]): mutmut 3.7.0 records which test calls which function under the test's
``item._nodeid``, an attribute pytest 9 no longer has (it has ``item.nodeid``). mutmut 3.8
reads ``nodeid`` but requires click>=8.4.2, which faust-streaming 0.15.3 (click<8.4) excludes;
drop this plugin when mutmut can move past 3.7.0."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    if not hasattr(item, "_nodeid"):
        item.__dict__["_nodeid"] = item.nodeid
