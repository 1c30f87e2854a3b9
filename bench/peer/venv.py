"""The peer's virtual environment, .venv-peer in the checkout: made (or completed) from
bench/peer/requirements.txt when the pinned versions are not all installed in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["peer_python", "REQUIREMENTS"]

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
VENV = ROOT / ".venv-peer"


def _pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.split("[")[0].lower()] = version
    return pins


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True, check=True).stdout
    return {n.lower(): v for n, _, v in (line.partition("==") for line in out.splitlines())}


def peer_python(say=print) -> Path:
    """The peer's interpreter, its requirements installed."""
    python = VENV / "bin" / "python"
    if not python.exists():
        say(f"making the peer's virtual environment {VENV} ...")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    installed = _installed(python)
    if any(installed.get(n) != v for n, v in _pins().items()):
        say(f"installing the peer's pinned requirements ({REQUIREMENTS}) ...")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                       check=True)
    return python
