"""pyproject.toml installs every package of the design card's folders under one import root."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO_ROOT


def _declared() -> tuple[dict[str, str], set[str]]:
    conf = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return conf["package-dir"], set(conf["packages"])


def test_every_package_directory_is_installed_under_mdmbus():
    package_dir, packages = _declared()
    found = set()
    for root_name, folder in package_dir.items():
        base = REPO_ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            name = ".".join((root_name, *rel.parts)) if rel.parts else root_name
            # A folder mapped on its own (mdmbus.streams -> streams/) is listed under that name.
            if any(name.startswith(f"{other}.") or name == other for other in package_dir
                   if other != root_name and other.startswith(f"{root_name}.")):
                continue
            found.add(name)
    assert found == packages, (f"packages missing from pyproject.toml: {sorted(found - packages)}; "
                               f"listed but absent: {sorted(packages - found)}")


def test_one_import_root():
    package_dir, packages = _declared()
    assert {name.split(".")[0] for name in packages} == {"mdmbus"}
    assert set(package_dir) <= packages


def test_every_package_the_product_imports_is_a_pinned_dependency():
    """A package imported by mdmbus's own code and arriving only through another's requirements
    changes version under it unseen: each is declared in [project] dependencies, pinned."""
    import ast
    import os
    import re
    import sys
    from importlib.metadata import packages_distributions

    pins = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {}
    for pin in pins:
        name, _, version = pin.partition("==")
        assert version, f"{pin} is not pinned (name==version)"
        declared[re.sub(r"[-_.]+", "-", name).lower()] = version
    distributions = packages_distributions()
    imported = set()
    for folder in ("mdmbus", "streams", "services", "schemas"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name.partition(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.partition(".")[0])
    third_party = {m for m in imported - set(sys.stdlib_module_names) - {"mdmbus", "__future__"}}
    if "MUTANT_UNDER_TEST" in os.environ:
        # ./run mutation: the package walked is mutmut's rewrite of it, which imports mutmut.
        third_party.discard("mutmut")
    undeclared = {m: distributions.get(m) for m in third_party
                  if not any(re.sub(r"[-_.]+", "-", d).lower() in declared
                             for d in distributions.get(m, []))}
    assert not undeclared, f"imported but not a pinned dependency: {undeclared}"
    assert {"aiohttp", "confluent_kafka", "faust", "jwt"} <= third_party  # the walk sees imports
