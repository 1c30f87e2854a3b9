"""After ``mutmut run``: every surviving mutant is explained, and the explicit mutants die.

``./run mutation`` runs this from the repository root once mutmut has run. It

1. applies each mutant of ``explicit.toml`` (what mutmut 3 cannot make: it mutates function
   bodies only, so module-level constants such as the contract's limits, and functions or
   classes under a decorator, are never mutated) to a copy of the package under
   ``mutants/explicit`` and runs the tests that entry names: they must fail;
2. reads mutmut's results and compares every mutant that was not killed with
   ``survivors.txt``, the committed list of equivalent mutants and why each is equivalent.

It exits non-zero if an explicit mutant survives, a survivor is not in the list, or the list
names a mutant that no longer survives (a stale entry hides nothing, but keep the list exact).

A survivor is identified by its function (mutmut's name without the ``__mutmut_N`` number) and
a hash of the lines it changes, so entries survive unrelated edits that renumber mutants; the
number in the list is there for ``mutmut show``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.mutation.stage import STAGE

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SURVIVORS = HERE / "survivors.txt"
EXPLICIT = HERE / "explicit.toml"
EXPLICIT_DIR = STAGE / "mutants" / "explicit"
#: mutmut statuses that count as killed.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}


# ---------------------------------------------------------------- explicit mutants

@dataclass(frozen=True)
class Explicit:
    id: str
    file: str
    before: str
    after: str
    tests: tuple[str, ...]
    why: str


def load_explicit() -> list[Explicit]:
    entries = tomllib.loads(EXPLICIT.read_text(encoding="utf-8"))["mutant"]
    return [Explicit(e["id"], e["file"], e["from"], e["to"], tuple(e["tests"]), e["why"])
            for e in entries]


def _copy_checkout() -> None:
    """A pristine copy of what the tests need, where the package can be mutated freely."""
    shutil.rmtree(EXPLICIT_DIR, ignore_errors=True)
    EXPLICIT_DIR.mkdir(parents=True)
    mutmut = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    for name in {"mdmbus", "tests", "pyproject.toml", *mutmut.get("also_copy", ())}:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, EXPLICIT_DIR / name,
                            ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        elif source.exists():
            shutil.copy2(source, EXPLICIT_DIR / name)
    # streams/, services/ and schemas/ are the subpackages mdmbus.streams, .services, .schemas
    # (pyproject's package-dir): linked into the copy's package, so that a mutant of a rule in
    # services/rules/ is the code the copy's tests import, not the checkout's.
    for sub in ("services", "streams", "schemas"):
        if (EXPLICIT_DIR / sub).is_dir() and not (EXPLICIT_DIR / "mdmbus" / sub).exists():
            (EXPLICIT_DIR / "mdmbus" / sub).symlink_to(Path("..") / sub)


def _pytest(tests: tuple[str, ...]) -> int:
    # python -m pytest puts the copy first on sys.path, so ``mdmbus`` is the copy's.
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "--no-header", "-p", "no:cacheprovider",
         "-p", "tests.mutation.plugin", *tests],
        cwd=EXPLICIT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ).returncode


def run_explicit(entries: list[Explicit]) -> list[str]:
    """Applies each mutant in turn; returns the problems (survivors, stale entries)."""
    problems = []
    _copy_checkout()
    every_test = tuple(sorted({t for e in entries for t in e.tests}))
    if _pytest(every_test) != 0:
        return [f"the tests of explicit.toml fail without any mutant: {' '.join(every_test)}"]
    for entry in entries:
        path = EXPLICIT_DIR / entry.file
        original = path.read_text(encoding="utf-8")
        if original.count(entry.before) != 1:
            problems.append(f"{entry.id}: {entry.file} has {original.count(entry.before)} "
                            f"occurrences of {entry.before!r}, not one: update explicit.toml")
            continue
        path.write_text(original.replace(entry.before, entry.after), encoding="utf-8")
        try:
            code = _pytest(entry.tests)
        finally:
            path.write_text(original, encoding="utf-8")
        verdict = "killed" if code in (1, 2) else f"SURVIVED (pytest exit {code})"
        print(f"  {entry.id}: {verdict}")
        if code not in (1, 2):
            problems.append(f"explicit mutant {entry.id} survived {' '.join(entry.tests)}: "
                            f"{entry.why}")
    return problems


# ---------------------------------------------------------------- mutmut's survivors

@dataclass(frozen=True)
class Survivor:
    name: str      # mutmut's, e.g. mdmbus.contract.limits.x_oversized__mutmut_1
    status: str
    diff: str

    @property
    def function(self) -> str:
        return self.name.partition("__mutmut_")[0]

    @property
    def changed(self) -> list[str]:
        return [line.rstrip() for line in self.diff.splitlines()
                if line[:1] in "+-" and not line.startswith(("+++", "---"))]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.changed).encode()).hexdigest()[:10]


def mutmut_results() -> tuple[dict[str, dict[str, int]], list[Survivor]]:
    """Count of mutants by module and status, and the mutants that were not killed."""
    os.chdir(STAGE)  # where ./run mutation ran mutmut
    from mutmut.__main__ import (Config, SourceFileMutationData, get_diff_for_mutant,
                                 status_by_exit_code, walk_mutatable_files)
    Config.ensure_loaded()
    counts: dict[str, dict[str, int]] = {}
    survivors = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        module = counts.setdefault(str(path.with_suffix("")).replace(os.sep, "."), {})
        for name, exit_code in data.exit_code_by_key.items():
            status = status_by_exit_code[exit_code]
            module[status] = module.get(status, 0) + 1
            if status not in KILLED:
                survivors.append(Survivor(name, status, get_diff_for_mutant(name, path=path)))
    return counts, survivors


def load_explained() -> dict[tuple[str, str], tuple[str, str]]:
    """(function, digest) -> (name as listed, reason) from survivors.txt."""
    explained = {}
    for number, line in enumerate(SURVIVORS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, digest, reason = (line.split(None, 2) + ["", ""])[:3]
        if "__mutmut_" not in name or len(digest) != 10 or not reason.strip():
            raise SystemExit(f"{SURVIVORS.name}:{number}: expected '<mutant name> <10-hex hash> "
                             f"<why it is equivalent>', got {line!r}")
        explained[(name.partition("__mutmut_")[0], digest)] = (name, reason.strip())
    return explained


def compare(survivors: list[Survivor], modules: set[str]) -> list[str]:
    """Problems: a survivor not listed, a listed one not 'survived', and a listed one that
    no longer survives in a module this run mutated (``modules``; a run restricted to some
    modules says nothing of the others' entries)."""
    explained = load_explained()
    problems = []
    seen = set()
    for survivor in survivors:
        key = (survivor.function, survivor.digest)
        if key in explained:
            seen.add(key)
            if survivor.status != "survived":
                problems.append(f"{survivor.name} is listed as equivalent but its status is "
                                f"{survivor.status!r}, not 'survived'")
            continue
        problems.append(f"unexplained survivor {survivor.name} ({survivor.status})")
        print(f"\n{survivor.name}: {survivor.status}\n  " + "\n  ".join(survivor.changed))
        print(f"  list it as:  {survivor.name} {survivor.digest} <why it is equivalent>")
    for key, (name, _) in sorted(explained.items()):
        if key not in seen and name.split(".x", 1)[0] in modules:
            problems.append(f"stale entry in {SURVIVORS.name}: {name} {key[1]} no longer "
                            f"survives (killed, changed or gone): remove it")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-explicit", action="store_true",
                        help="only compare mutmut's survivors with survivors.txt")
    args = parser.parse_args()
    problems = []
    if not args.skip_explicit:
        entries = load_explicit()
        print(f"mutation: {len(entries)} explicit mutants (explicit.toml)")
        problems += run_explicit(entries)
    counts, survivors = mutmut_results()
    listed = load_explained()
    print("mutation: mutmut, by module: generated, killed, survived (of them listed as "
          "equivalent), other")
    for module, by_status in sorted(counts.items()):
        killed = sum(n for status, n in by_status.items() if status in KILLED)
        alive = [s for s in survivors if s.name.split(".x", 1)[0] == module]
        equivalent = sum(1 for s in alive if (s.function, s.digest) in listed)
        survived = by_status.get("survived", 0)
        other = sum(by_status.values()) - killed - survived
        print(f"  {module}: {sum(by_status.values())}, {killed}, {survived} ({equivalent}), "
              f"{other}")
    total = {status: sum(c.get(status, 0) for c in counts.values())
             for status in {s for c in counts.values() for s in c}}
    print(f"mutation: mutmut: {sum(total.values())} mutants: "
          + ", ".join(f"{n} {s}" for s, n in sorted(total.items(), key=lambda i: -i[1])))
    problems += compare(survivors, set(counts))
    explained = sum(1 for s in survivors if (s.function, s.digest) in listed)
    print(f"mutation: {len(survivors)} not killed, {explained} of them listed as equivalent "
          f"in {SURVIVORS.relative_to(ROOT)}")
    for problem in problems:
        print(f"mutation: FAIL: {problem}")
    if not problems:
        print("mutation: OK: no unexplained survivor")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
