"""services/rules/enforcement.py is the one list of where each rule is enforced: every function
and file it names exists, every test it cites exists, and the README shows it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from mdmbus.services.rules.enforcement import POINTS, PROOFS, RULES, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def _resolve(where: str):
    module, _, name = where.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_enforcement_point_exists():
    missing = []
    for point in POINTS:
        if ":" in point.where:
            try:
                assert callable(_resolve(point.where))
            except (ImportError, AttributeError, AssertionError) as exc:
                missing.append(f"rule {point.rule}: {point.where} ({exc!r})")
        elif not (ROOT / point.where).exists():
            missing.append(f"rule {point.rule}: {point.where} (no such file)")
    assert not missing, "\n".join(missing)


def test_every_cited_test_exists():
    missing = []
    for rule, proofs in PROOFS.items():
        for proof in proofs:
            path, _, name = proof.partition("::")
            file = ROOT / path
            if not file.is_file():
                missing.append(f"rule {rule}: {path} (no such file)")
            elif name and not re.search(rf"^(async )?def {re.escape(name)}\(",
                                        file.read_text(), re.M):
                missing.append(f"rule {rule}: {proof} (no such test)")
    assert not missing, "\n".join(missing)


def test_every_rule_has_points_and_proofs():
    assert set(RULES) == set(PROOFS) == {p.rule for p in POINTS} == set(range(1, 9))


def test_the_readme_shows_the_list():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, (
        "README.md's 'Where each rule is enforced' table is not the list in "
        "services/rules/enforcement.py: replace it with the output of "
        "`python -m mdmbus.services.rules.enforcement`")


def test_the_check_fails_for_a_name_that_does_not_exist():
    try:
        _resolve("mdmbus.services.rules.retention:no_such_function")
    except AttributeError:
        return
    raise AssertionError("a missing function resolved")
