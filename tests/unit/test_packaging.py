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
