"""A user's first hour: the wheel, installed into a fresh environment, works from any
directory with no checkout, and installs nothing but ``mdmbus`` at the top level."""

from __future__ import annotations

import hashlib

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Builds the wheel (pip, build isolation as pyproject.toml asks) and installs it into a
    fresh virtual environment. The wheel's dependencies come from this environment's
    site-packages through a path entry (no network needed for them); mdmbus itself comes only
    from the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
                  str(REPO_ROOT)])
    assert built.returncode == 0, built.stderr
    wheel, = (work / "dist").glob("mdmbus-*.whl")
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    got = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                "--no-deps", str(wheel)])
    assert got.returncode == 0, got.stderr
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home = work / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(home),
           "LANG": "C.UTF-8"}  # nothing of this checkout's MDMBUS_* settings
    return {"wheel": wheel, "venv": venv, "python": python, "site": site, "env": env,
            "cwd": home}


def test_the_wheel_installs_only_mdmbus_at_the_top_level(installed):
    names = {n.split("/")[0] for n in zipfile.ZipFile(installed["wheel"]).namelist()}
    assert names == {"mdmbus", f"{installed['wheel'].name.split('-py3')[0]}.dist-info"}
    top = {p.name for p in installed["site"].iterdir()} - {"zz_dependencies.pth", "__pycache__"}
    assert top == {"mdmbus", f"{installed['wheel'].name.split('-py3')[0]}.dist-info"}, top


def test_the_command_runs_from_another_directory(installed):
    help_ = _run(["mdmbus", "--help"], env=installed["env"], cwd=installed["cwd"])
    assert help_.returncode == 0, help_.stderr
    assert "produce" in help_.stdout and "stack" in help_.stdout


def test_produce_dry_run_reads_the_contract_from_the_package(installed):
    example = REPO_ROOT / "examples" / "records.jsonl"
    done = _run(["mdmbus", "produce", "--dry-run", str(example)], env=installed["env"],
                cwd=installed["cwd"])
    lines = [line for line in example.read_text().splitlines() if line.strip()]
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{len(lines)} valid"), done.stdout


def test_stack_status_keeps_its_state_in_the_users_state_directory(installed):
    status = _run(["mdmbus", "stack", "status"], env=installed["env"], cwd=installed["cwd"])
    # Nothing runs for this fresh user: status says so with exit status 3, and names where
    # the state would live: the XDG state directory, not site-packages.
    assert status.returncode == 3, status.stdout + status.stderr
    state = installed["cwd"] / ".local" / "state" / "mdmbus"
    assert str(state) in status.stdout, status.stdout
    assert "site-packages" not in status.stdout
    # Looking made nothing: no cluster directory (in /var/tmp when run as root) for a stack
    # that was never started.
    tag = hashlib.sha1(str(state).encode()).hexdigest()[:10]
    assert not Path(f"/var/tmp/mdmbus-pg-{tag}").exists()
    assert not (state / "postgres").exists()


def test_the_contract_imports_from_the_wheel(installed):
    code = ("import json, mdmbus, mdmbus.contract as c; r = c.default_registry(); "
            "print(json.dumps([mdmbus.__file__, str(r.kinds['U12'].path), len(r.kinds)]))")
    done = _run([str(installed["python"]), "-c", code], env=installed["env"], cwd=installed["cwd"])
    assert done.returncode == 0, done.stderr
    module, schema, kinds = json.loads(done.stdout)
    assert module.startswith(str(installed["site"])) and schema.startswith(str(installed["site"]))
    # every schema file of the checkout is in the wheel
    assert kinds == len([p for p in (REPO_ROOT / "schemas" / "avro").glob("*.avsc")
                         if not p.name.startswith("_")])
