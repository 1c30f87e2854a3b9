"""The tree ``./run mutation`` runs mutmut in: the checkout laid out as it is installed.

mutmut names a mutant by its file's path (``services/gateway/tokens.py`` ->
``services.gateway.tokens``) and switches a mutant on only in the module of that name; the
code runs as ``mdmbus.services.gateway.tokens`` (pyproject.toml's ``package-dir`` installs
streams/, services/ and schemas/ under ``mdmbus``). So mutmut runs in ``.cache/mutation``,
where ``mdmbus/`` is a copy of the package with those folders copied in at their installed
places: every path there is its module's name, and the tests import what mutmut mutates.
The rest (tests/, pyproject.toml, what [tool.mutmut] ``also_copy`` names) is linked, so that
mutmut copies the checkout's current files on each run.

    .venv/bin/python -m tests.mutation.stage      # prints the tree's path
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / ".cache" / "mutation"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")


def package_dirs() -> dict[str, str]:
    """Installed package -> folder in the checkout (pyproject.toml's package-dir)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return dict(setuptools["package-dir"])


def stage() -> Path:
    """(Re)makes the package copy and the links; keeps ``mutants/`` (mutmut's results)."""
    STAGE.mkdir(parents=True, exist_ok=True)
    package = STAGE / "mdmbus"
    shutil.rmtree(package, ignore_errors=True)
    # Shortest names first: the package itself, then the folders installed inside it.
    for name, folder in sorted(package_dirs().items(), key=lambda item: item[0].count(".")):
        target = STAGE.joinpath(*name.split("."))
        shutil.copytree(ROOT / folder, target, ignore=_IGNORE, dirs_exist_ok=True)
    mutmut = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in {"tests", "pyproject.toml", *mutmut.get("also_copy", ())}:
        link = STAGE / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        if (ROOT / name).exists():
            link.symlink_to(ROOT / name)
    return STAGE


if __name__ == "__main__":
    print(stage())
