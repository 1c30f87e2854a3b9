"""The embedded PostgreSQL server's guard module (conf/mdmbus_guard.c): every role may change
its own password in stock PostgreSQL; with this module loaded (shared_preload_libraries) only
the superuser sets passwords. Built once per source version with the C compiler against the
server's headers (Debian: postgresql-server-dev-15), into the cluster's directory, where the
server's user can read it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

from mdmbus.stack.errors import StackError

__all__ = ["ensure_guard", "SOURCE"]

SOURCE = Path(str(files("mdmbus.stack") / "conf" / "mdmbus_guard.c"))


def _include_dir(bin_dir: Path) -> Path:
    pg_config = bin_dir / "pg_config"
    command = str(pg_config) if pg_config.exists() else shutil.which("pg_config")
    if command:
        proc = subprocess.run([command, "--includedir-server"], capture_output=True, text=True)
        found = Path(proc.stdout.strip())
        if proc.returncode == 0 and (found / "postgres.h").exists():
            return found
    version = bin_dir.parent.name  # /usr/lib/postgresql/15/bin -> 15
    candidate = Path("/usr/include/postgresql") / version / "server"
    if (candidate / "postgres.h").exists():
        return candidate
    raise StackError("the PostgreSQL server headers (postgres.h) are missing, needed to build "
                     "mdmbus's password guard: install them (apt-get install "
                     "postgresql-server-dev-15) and a C compiler (gcc)")


def ensure_guard(bin_dir: Path, directory: Path, owner: str | None = None) -> Path:
    """The guard's shared library in ``directory`` (built if this source version has none
    there yet); ``owner`` (as root: the server's user) is given the file."""
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source).hexdigest()[:12]
    target = directory / f"mdmbus_guard-{tag}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise StackError("no C compiler (cc, gcc) to build mdmbus's PostgreSQL password guard: "
                         "install gcc")
    include = _include_dir(bin_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if owner:
        shutil.chown(directory, owner, owner)
    partial = directory / f".{target.name}.partial"
    proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-Wall", f"-I{include}",
                           "-o", str(partial), str(SOURCE)], capture_output=True, text=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise StackError(f"building {SOURCE.name} failed: {(proc.stderr or proc.stdout)[-800:]}")
    os.chmod(partial, 0o500)
    if owner:
        shutil.chown(partial, owner, owner)
    partial.rename(target)
    for old in directory.glob("mdmbus_guard-*.so"):
        if old != target:
            old.unlink(missing_ok=True)
    return target
