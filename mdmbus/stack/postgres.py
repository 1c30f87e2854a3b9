"""The embedded PostgreSQL 15 cluster: initdb in the state directory, loopback only.

initdb refuses to run as root, so as root the cluster is made and run as the ``postgres``
user. Every TCP connection is TLS (the stack CA's certificate for 127.0.0.1 and localhost).
Each service logs in as its own role (mdmbus/identities.py) by a client certificate of the
stack's CA, which nothing it can do in the database changes; operators' roles and the
superuser (for provisioning) by a scram-sha-256 password, over TLS or on the Unix socket (a
password, no TLS there); nothing else is accepted (pg_hba.conf is rewritten at each start).
Every server process runs with umask 077; its logs roll over at a size cap.
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
            if not root.exists():  # removed meanwhile (a purge, /var/tmp cleaned): made anew
                root.mkdir(parents=True)
                shutil.chown(root, RUN_AS, RUN_AS)
            elif root.is_relative_to(settings.state_dir) and not _runs_as_postgres(root):
                root = _move_out(settings, root)
                pointer.write_text(f"{root}\n")
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.chown(root, RUN_AS, RUN_AS)
            if not _runs_as_postgres(root):
                # A parent directory (e.g. /root) is closed to the postgres user.
                root = _outside(settings)
                root.mkdir(parents=True, exist_ok=True)
                shutil.chown(root, RUN_AS, RUN_AS)
            pointer.write_text(f"{root}\n")
    return PgPaths(root, root / "data", root / "postgres.log")


def _outside(settings: Settings) -> Path:
    tag = hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"mdmbus-pg-{tag}"


def _move_out(settings: Settings, root: Path) -> Path:
    """A cluster made inside the state directory when that was open to the postgres user
    (0755): the state directory is its owner's alone now (0700), so the cluster moves where a
    new one would be made. ``mv`` keeps the files' owner and modes, across file systems too."""
    target = _outside(settings)
    if target.exists() and any(target.iterdir()):
        raise StackError(f"the PostgreSQL cluster in {root} must move out of the state directory "
                         f"(now closed to the postgres user), but {target} is not empty: remove "
                         f"it, or move the cluster there yourself")
    if target.exists():
        target.rmdir()
    subprocess.run(["mv", str(root), str(target)], check=True)
    # The socket directory was written at initdb as the cluster's old place.
    conf = target / "data" / "postgresql.auto.conf"
    if conf.exists():
        conf.write_text(conf.read_text().replace(f"unix_socket_directories = '{root}'",
                                                 f"unix_socket_directories = '{target}'"))
    return target


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    if _as_root():
        cmd = ["runuser", "-u", RUN_AS, "--"] + cmd
    # umask 077: whatever the server and its tools create is the server user's alone.
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          umask=0o077)
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
    # initdb wants the superuser's password for scram-sha-256; it reads it from a file only
    # the server's user can read, removed right after.
    pwfile = paths.root / ".initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write((settings.pg_password or settings.password("pg", settings.pg_user)) + "\n")
    if _as_root():
        shutil.chown(pwfile, RUN_AS, RUN_AS)
    try:
        _run([str(bin_dir() / "initdb"), "-D", str(paths.data), "-U", settings.pg_user,
              "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
              "--locale=C.UTF-8", "--no-instructions"])
    finally:
        pwfile.unlink(missing_ok=True)
    with open(paths.data / "postgresql.auto.conf", "a") as conf:
        conf.write(
            "# mdmbus embedded stack\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{paths.root}'\n"
            "max_connections = 200\n"
            "shared_buffers = '256MB'\n"
        )


def _hba() -> str:
    """Who may connect how. Services (mdmbus/identities.py, login "certificate") by a client
    certificate of the stack's CA whose common name is their role, over TLS, and by nothing
    else: not on the socket, and a password they were given anyway opens nothing. Everyone
    else (operators' roles, the superuser) by a SCRAM password, over TLS or on the socket.
    Base backups and WAL streaming (pg_basebackup, pg_receivewal) only on the socket, and only
    for a role with the REPLICATION attribute (the superuser; no service has it)."""
    from mdmbus.identities import CERTIFICATE, pg_roles
    services = ",".join(r.name for r in pg_roles() if r.login == CERTIFICATE)
    return f"""# Written by mdmbus at each start (mdmbus/stack/postgres.py); edits here are replaced.
local   all  {services}                 reject
local   all  all                 scram-sha-256
hostssl all  {services}  127.0.0.1/32   cert
hostssl all  {services}  ::1/128        cert
hostssl all  all  127.0.0.1/32   scram-sha-256
hostssl all  all  ::1/128        scram-sha-256
local   replication  all         scram-sha-256
"""


HBA = _hba()

#: Server logs: collected by the server into log/ under its data directory (0600), a new file
#: at the size cap (MDMBUS_LOG_MAX_BYTES) and at least daily. PostgreSQL keeps every file it
#: rolled; the oldest beyond MDMBUS_LOG_BACKUPS + 1 are removed at each start.
_LOG_CONF = """# mdmbus: server logs (mdmbus/stack/postgres.py), rewritten at each start
logging_collector = on
log_directory = 'log'
log_filename = 'postgresql-%Y%m%d-%H%M%S.log'
log_file_mode = 0600
log_rotation_size = '{kib}kB'
log_rotation_age = '1d'
log_truncate_on_rotation = off
"""

_SECURITY_CONF = """# mdmbus: TLS and passwords (mdmbus/stack/postgres.py), rewritten at each start
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
"""


def _write_files(paths: PgPaths, settings: Settings) -> None:
    """The server's certificate, key and the CA it checks client certificates against, in the
    data directory (owned by the server's user, 0600, as PostgreSQL demands), the TLS and
    logging settings, the password guard (pg_guard.py) and pg_hba.conf."""
    from mdmbus.stack.pg_guard import ensure_guard
    from mdmbus.stack.pki import Pki
    pki = Pki(settings.pki_dir)
    guard = ensure_guard(bin_dir(), paths.root / "lib", RUN_AS if _as_root() else None)
    kib = max(settings.log_max_bytes // 1024, 1)
    files = {"server.crt": pki.cert_file("postgres").read_bytes(),
             "server.key": pki.key_file("postgres").read_bytes(),
             "ca.crt": pki.ca_file.read_bytes(),
             "pg_hba.conf": HBA.encode(),
             "mdmbus-security.conf": (_SECURITY_CONF + _LOG_CONF.format(kib=kib)
                                      + f"shared_preload_libraries = '{guard}'\n").encode()}
    for name, data in files.items():
        path = paths.data / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        if _as_root():
            shutil.chown(path, RUN_AS, RUN_AS)
    # A cluster made by an older mdmbus switched the log collector off in postgresql.auto.conf,
    # which is read last: that line goes (the file is edited in place, its owner kept).
    auto_conf = paths.data / "postgresql.auto.conf"
    text = auto_conf.read_text()
    if "logging_collector" in text:
        with open(auto_conf, "r+") as f:
            f.seek(0)
            f.write("".join(line for line in text.splitlines(keepends=True)
                            if not line.startswith("logging_collector")))
            f.truncate()
    auto = paths.data / "postgresql.conf"
    if "include_if_exists = 'mdmbus-security.conf'" not in auto.read_text():
        with open(auto, "a") as conf:
            conf.write("include_if_exists = 'mdmbus-security.conf'\n")
    _prune_logs(paths, settings.log_backups + 1)


def _prune_logs(paths: PgPaths, keep: int) -> None:
    """The oldest server logs beyond the ``keep`` newest (names sort by time)."""
    logs = sorted((paths.data / "log").glob("postgresql-*.log"))
    for old in logs[:-keep] if keep > 0 else logs:
        try:
            old.unlink()
        except PermissionError:  # as root, the files are the server user's: ask it
            _run(["rm", "-f", str(old)], check=False)


def _secure(paths: PgPaths, settings: Settings) -> None:
    """Before each start: the files of ``_write_files``, and the superuser's password set to
    the stack's (single-user mode: no login needed, and a cluster made by an older mdmbus with
    ``trust`` gets a password this way)."""
    password = settings.pg_password or settings.password("pg", settings.pg_user)
    _write_files(paths, settings)
    literal = password.replace("'", "''")
    cmd = [str(bin_dir() / "postgres"), "--single", "-D", str(paths.data), "-j", "postgres"]
    if _as_root():
        cmd = ["runuser", "-u", RUN_AS, "--"] + cmd
    proc = subprocess.run(cmd, umask=0o077, input=f'ALTER ROLE "{settings.pg_user}" PASSWORD \'{literal}\';\n',
                          capture_output=True, text=True)
    if proc.returncode != 0 or "ERROR" in proc.stdout + proc.stderr:
        raise StackError(f"setting the PostgreSQL superuser's password failed: "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}")


def _read(path: Path) -> str | None:
    """A file of the data directory (as root it may be readable by the postgres user only)."""
    proc = _run(["cat", str(path)], check=False)
    return proc.stdout if proc.returncode == 0 else None


def _pg_ctl(paths: PgPaths, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([str(bin_dir() / "pg_ctl"), "-D", str(paths.data), *args], check=check)


def running(paths: PgPaths) -> bool:
    if not (paths.data / "PG_VERSION").exists():
        return False
    return _pg_ctl(paths, "status", check=False).returncode == 0


def start(settings: Settings) -> str:
    paths = pg_paths(settings)
    if running(paths):
        hba = paths.data / "pg_hba.conf"
        held = _read(hba)
        if held != HBA:
            raise StackError(f"the running PostgreSQL server ({paths.data}) was started by "
                             f"another mdmbus version, with other login rules (an older one: "
                             f"without TLS and passwords, or without client certificates for "
                             f"the services): stop it with `mdmbus stack down`, then start "
                             f"again")
        return f"postgres: already running on 127.0.0.1:{settings.pg_port}"
    ensure_port_free(settings.pg_port, "PostgreSQL", "MDMBUS_PG_PORT")
    _initdb(paths, settings)
    _secure(paths, settings)
    # pg_ctl -w waits until the server accepts connections; a stale postmaster.pid from a
    # crash is detected and replaced by the server itself.
    # -l: what the server says before its log collector runs (start-up failures).
    # -c unix_socket_permissions=0700: the socket is the owner's alone (its default, 0777,
    # relies on the directory's 0700 only), for clusters made by any version.
    proc = _pg_ctl(paths, "start", "-w", "-t", str(int(settings.start_timeout_s)),
                   "-l", str(paths.log), "-o",
                   f"-p {settings.pg_port} -c unix_socket_permissions=0700", check=False)
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


def _located(settings: Settings) -> PgPaths:
    """Where the cluster is or would be, making nothing (a status must not leave a directory
    in /var/tmp for a stack that was never started): the pointer's place, else the state
    directory's."""
    pointer = settings.state_dir / "postgres.location"
    root = Path(pointer.read_text().strip()) if pointer.exists() else settings.state_dir / "postgres"
    return PgPaths(root, root / "data", root / "postgres.log")


def describe(settings: Settings) -> tuple[bool, str]:
    """Whether the server runs, and a status line saying where."""
    paths = _located(settings)
    up = running(paths)
    return up, (f"postgres  {'running' if up else 'stopped':<9} 127.0.0.1:{settings.pg_port} "
                f"(TLS; services by certificate, operators by scram)  "
                f"data {paths.data}  log {paths.log}")
