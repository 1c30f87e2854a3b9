"""mypy over the product code, as installed: ``./run tests`` runs it before the suite.

The design card's top-level folders are installed under one import root (pyproject.toml's
``[tool.setuptools] package-dir``: ``streams/`` is ``mdmbus.streams``, ``services/`` is
``mdmbus.services``). mypy names a file by the folders it sits in, so ``mypy streams`` would
check a package ``streams`` that nothing imports, and ``mypy -p mdmbus.streams`` cannot find it
(the editable install maps it with an import hook, which mypy does not run). This script gives
mypy every file under the name it is imported by, read from that same ``package-dir`` table,
and leaves everything else (strictness, third-party modules without types) to ``[tool.mypy]``
in pyproject.toml.

    .venv/bin/python -m tests.typecheck        # exit 0: no finding; 1: findings (listed)
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from mypy.build import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parents[1]


def sources() -> list[BuildSource]:
    """Every module of every package pyproject.toml installs, under its installed name."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = []
    for package, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            module = ".".join((package, *parts))
            # A subfolder mapped elsewhere (none today) is checked under its own entry.
            if any(module.startswith(f"{other}.") or module == other
                   for other in setuptools["package-dir"]
                   if other != package and other.startswith(f"{package}.")):
                continue
            found.append(BuildSource(str(path.relative_to(ROOT)), module))
    return found


def main() -> int:
    started = time.monotonic()
    # The options come from [tool.mypy]; the files named here only satisfy the parser (which
    # wants a target) and are replaced by sources() below.
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "mdmbus"])
    checked = sources()
    try:
        result = build(checked, options)
        messages = result.errors
    except CompileError as exc:  # a syntax error: mypy stops at the first file
        messages = exc.messages
    for line in messages:
        print(line)
    failed = [m for m in messages if ": error:" in m]
    files = {m.split(":", 1)[0] for m in failed}
    took = time.monotonic() - started
    if failed:
        print(f"mypy: {len(failed)} errors in {len(files)} files "
              f"({len(checked)} modules checked, {took:.1f} s)", file=sys.stderr)
        return 1
    print(f"mypy: no issues in {len(checked)} modules ({took:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
