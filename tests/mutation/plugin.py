"""The pytest plugin of mutation runs (``./run mutation``), loaded by [tool.mutmut]'s
``pytest_add_cli_args`` in pyproject.toml; plain test runs never load it.

mutmut runs the suite once to learn which tests call which function ("stats"), then, for each
mutant, runs those tests in a process forked from its own, with the mutant switched on. Three
things of this project would make that report survivors the tests do kill:

- **Load-time work is cached.** The registry (``default_registry()``, ``lru_cache``), the checks
  it compiles for decoded records (``Registry.decoded_checks``) and the test modules' own
  ``REGISTRY = default_registry()`` are built before the fork, with the code unmutated. In a
  mutant's process this plugin empties every ``functools`` cache of ``mdmbus`` and drops the
  test modules, so they are imported again, and all of it rebuilt, under the mutant.
- **Calls made while importing a test module belong to no test** (mutmut gives them all to
  the first test that runs). They are given to every test of that module; each module is
  imported with empty caches, so each is seen building the registry it uses; and before each
  test of the stats run caches are emptied again (registries the test modules hold keep their
  identity, as do those of fixtures; their compiled checks are dropped), so a test is seen
  calling what it rebuilds.
- **A broken import is a collection error**, which pytest reports as exit status 2 and mutmut
  as "interrupted by user"; **a test that no longer exists** (tests parametrized by the
  registry's kinds) is a usage error, status 4, which mutmut takes for a broken setup. In a
  mutant's process both count as failures: the mutant changed what the suite sees, it is killed.

Hypothesis runs derandomized and without its example database, so that two runs of the same
code find the same survivors. And mutmut 3.7.0 reads ``item._nodeid``, which pytest 9 no longer
has; it gets ``item.nodeid`` (mutmut 3.8 reads that, but needs click>=8.4.2, which
faust-streaming 0.15.3 excludes).
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import settings

settings.register_profile("mutation", derandomize=True, database=None)
settings.load_profile("mutation")

#: Functions called while collecting, by test module node id ("" before the first module).
_import_time_calls: dict[str, set[str]] = {}
_module_ids: set[str] = set()


def _mode() -> str:
    """What mutmut runs: "stats", a mutant's name, "" (clean run) or "fail" (its self-check)."""
    return os.environ.get("MUTANT_UNDER_TEST", "")


def _in_mutant() -> bool:
    return "__mutmut_" in _mode()


def _mutmut_stats() -> set[str]:
    import mutmut
    return mutmut._stats


def _clear_caches() -> None:
    """Empties every functools cache in mdmbus, and the compiled checks of the registries the
    test modules hold."""
    from mdmbus.contract.registry import Registry
    for name, module in list(sys.modules.items()):
        if module is None:
            continue
        if name == "mdmbus" or name.startswith("mdmbus."):
            for value in list(vars(module).values()):
                if getattr(value, "__module__", None) == name and hasattr(value, "cache_clear"):
                    value.cache_clear()
        elif name.startswith("tests."):
            for value in list(vars(module).values()):
                if isinstance(value, Registry):
                    value.decoded_checks.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if not _in_mutant():
        return
    _clear_caches()
    for name in [n for n, m in sys.modules.items() if n.startswith("tests.")
                 and n != "tests.conftest" and not n.startswith("tests.mutation")
                 and not hasattr(m, "__path__")]:
        del sys.modules[name]


@pytest.hookimpl(tryfirst=True)
def pytest_itemcollected(item: pytest.Item) -> None:
    if not hasattr(item, "_nodeid"):
        item.__dict__["_nodeid"] = item.nodeid


def pytest_collectstart(collector: pytest.Collector) -> None:
    if _mode() == "stats" and isinstance(collector, pytest.Module):
        _module_ids.add(collector.nodeid)
        _import_time_calls.setdefault("", set()).update(_mutmut_stats())
        _mutmut_stats().clear()
        _clear_caches()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _mode() == "stats" and report.nodeid in _module_ids:
        _import_time_calls.setdefault(report.nodeid, set()).update(_mutmut_stats())
        _mutmut_stats().clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _mode() == "stats":
        _clear_caches()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if _mode() == "stats":  # registries from fixtures (shared across tests) as well
        from mdmbus.contract.registry import Registry
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Registry):
                value.decoded_checks.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _mode() == "stats":
        module = item.getparent(pytest.Module)
        _mutmut_stats().update(_import_time_calls.get("", ()),
                               _import_time_calls.get(module.nodeid if module else "", ()))


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session):
    try:
        return (yield)
    except pytest.UsageError as exc:
        if not _in_mutant():
            raise
        session.testsfailed += 1
        session.shouldfail = f"the mutant changed the collected tests: {exc}"
        return True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _in_mutant() and exitstatus == pytest.ExitCode.INTERRUPTED and session.testsfailed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
