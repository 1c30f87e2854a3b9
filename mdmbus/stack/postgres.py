"""The embedded PostgreSQL 15 cluster: initdb in the state directory, loopback only.

initdb refuses to run as root, so as root the cluster is made and run as the ``postgres``
user. Authentication is ``trust`` on 127.0.0.1 only: a throw-away cluster for one machine.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mdmbus.settings import Settings
from mdmbus.stack.errors import StackError
from mdmbus.stack.processes import ensure_port_free, port_open, tail

__all__ = ["PgPaths", "pg_paths", "start", "stop", "running", "describe", "bin_dir"]

RUN_AS = "postgres"


@dataclass(frozen=True)
class PgPaths:
    root: Path
    data: Path
    log: Path


def bin_dir() -> Path:
    """The PostgreSQL server binaries: PATH first, then Debian's versioned directories."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    raise StackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
                     "(apt-get install postgresql-15) or put their directory on PATH")


def _as_root() -> bool:
    return os.geteuid() == 0


def _runs_as_postgres(path: Path) -> bool:
    return subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-x", str(path)]).returncode == 0


def pg_paths(settings: Settings) -> PgPaths:
    """Where the cluster lives. As root it must be a place the postgres user can reach."""
    root = settings.state_dir / "postgres"
    pointer = settings.state_dir / "postgres.location"
    if _as_root():
        if pointer.exists():
            root = Path(pointer.read_text().strip())
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.chown(root, RUN_AS, RUN_AS)
            if not _runs_as_postgres(root):
                # A parent directory (e.g. /root) is closed to the postgres user.
                tag = hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:10]
                root = Path("/var/tmp") / f"mdmbus-pg-{tag}"
                root.mkdir(parents=True, exist_ok=True)
                shutil.chown(root, RUN_AS, RUN_AS)
            pointer.write_text(f"{root}\n")
    return PgPaths(root, root / "data", root / "postgres.log")


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if _as_root():
        cmd = ["runuser", "-u", RUN_AS, "--"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise StackError(f"{Path(cmd[cmd.index('--') + 1] if '--' in cmd else cmd[0]).name} "
                         f"failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _initdb(paths: PgPaths, settings: Settings) -> None:
    if (paths.data / "PG_VERSION").exists():
        return
    if _as_root():
        try:
            import pwd
            pwd.getpwnam(RUN_AS)
        except KeyError:
            raise StackError("running as root, but there is no 'postgres' user to run PostgreSQL "
                             "as (initdb refuses root): install postgresql-15 or run as a normal "
                             "user") from None
    paths.root.mkdir(parents=True, exist_ok=True)
    _run([str(bin_dir() / "initdb"), "-D", str(paths.data), "-U", settings.pg_user,
          "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"])
    with open(paths.data / "postgresql.auto.conf", "a") as conf:
        conf.write(
            "# mdmbus embedded stack\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{paths.root}'\n"
            "max_connections = 200\n"
            "shared_buffers = '256MB'\n"
            "logging_collector = off\n"
        )


def _pg_ctl(paths: PgPaths, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([str(bin_dir() / "pg_ctl"), "-D", str(paths.data), *args], check=check)


def running(paths: PgPaths) -> bool:
    if not (paths.data / "PG_VERSION").exists():
        return False
    return _pg_ctl(paths, "status", check=False).returncode == 0


def start(settings: Settings) -> str:
    paths = pg_paths(settings)
    if running(paths):
        return f"postgres: already running on 127.0.0.1:{settings.pg_port}"
    ensure_port_free(settings.pg_port, "PostgreSQL", "MDMBUS_PG_PORT")
    _initdb(paths, settings)
    # pg_ctl -w waits until the server accepts connections; a stale postmaster.pid from a
    # crash is detected and replaced by the server itself.
    proc = _pg_ctl(paths, "start", "-w", "-t", str(int(settings.start_timeout_s)),
                   "-l", str(paths.log), "-o", f"-p {settings.pg_port}", check=False)
    if proc.returncode != 0 or not port_open(settings.pg_port):
        raise StackError(f"PostgreSQL did not start on 127.0.0.1:{settings.pg_port}; see "
                         f"{paths.log}:\n{tail(paths.log)}")
    return f"postgres: started on 127.0.0.1:{settings.pg_port}, data {paths.data}, log {paths.log}"


def stop(settings: Settings) -> str:
    paths = pg_paths(settings)
    if not running(paths):
        (paths.data / "postmaster.pid").unlink(missing_ok=True)
        return "postgres: not running"
    _pg_ctl(paths, "stop", "-w", "-m", "fast")
    return "postgres: stopped"


def describe(settings: Settings) -> tuple[bool, str]:
    """Whether the server runs, and a status line saying where."""
    paths = pg_paths(settings)
    up = running(paths)
    return up, (f"postgres  {'running' if up else 'stopped':<9} 127.0.0.1:{settings.pg_port}  "
                f"data {paths.data}  log {paths.log}")
