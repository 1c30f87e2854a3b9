"""Nothing on disk is readable past its owner, and no log grows without bound: the state
directory of the running test stack (Kafka's segments and metadata, PostgreSQL's cluster, the
credentials, the processes' logs) holds no file or directory that group or others may read,
write or enter, public certificates and the JWKS aside; every server and process runs with
umask 077; the broker's log rolls over at the configured cap.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.metadata import MetadataRequest

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.regions import REGIONS, region_database
from mdmbus.stack.kafka import kafka_paths, running_pid
from mdmbus.stack.postgres import pg_paths
from tests.conftest import wait_for
from tests.integration.harness import launcher

pytestmark = pytest.mark.integration

#: Files anyone may read, by hand: the CA's and the servers' certificates, the token
#: issuer's public keys. (mdmbus writes them 0600 all the same.)
PUBLIC = ("*.crt", "jwks.json")


def _umask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError(f"no Umask in /proc/{pid}/status")


def _postmaster_pid(stack) -> int:
    return int((pg_paths(stack).data / "postmaster.pid").read_text().split()[0])


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (FileNotFoundError, IndexError, ProcessLookupError):
                continue
    return out


def _exposed(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that group or others may use, but the
    public files."""
    found = []
    for directory, dirs, names in os.walk(root):
        for path in [Path(directory), *(Path(directory, n) for n in dirs + names)]:
            try:
                st = path.lstat()
            except FileNotFoundError:  # a segment deleted meanwhile
                continue
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            if stat.S_ISREG(st.st_mode) and any(path.match(p) for p in PUBLIC) \
                    and not st.st_mode & 0o022:
                continue
            found.append(f"{stat.filemode(st.st_mode)} {path}")
    return found


async def test_the_state_directory_is_its_owners_alone_after_the_processes_ran(stack):
    state = stack.state_dir
    logs = state / "logs" / f"at-rest-{uuid.uuid4().hex[:8]}"
    # As the demo does it: it runs in the `mdmbus` command, whose umask is 077 (pytest's is
    # not, and the harness makes the launcher's directories before the launcher runs).
    previous = os.umask(0o077)
    try:
        procs = launcher(stack, logs, speed=1.0)
    finally:
        os.umask(previous)
    try:
        procs.start("sweeper", "all")
        procs.start("gateway", "all")

        def logged() -> bool:
            procs.assert_alive()
            return all((logs / f"{k}.log").exists() and (logs / f"{k}.log").stat().st_size
                       for k in ("sweeper-all", "gateway-all"))
        await wait_for(logged, 90, "both processes writing their logs", interval_s=0.2)
        # Every server and process makes its files with umask 077.
        kafka_pid = running_pid(stack)
        assert kafka_pid is not None, "the test stack's broker is not running"
        postmaster = _postmaster_pid(stack)
        servers = {"kafka": kafka_pid, "postgres": postmaster,
                   **{f"postgres child {p}": p for p in _children(postmaster)}}
        processes = {k: p.pid for k, p in procs.procs.items()}
        umasks = {name: oct(_umask(pid)) for name, pid in {**servers, **processes}.items()}
        assert set(umasks.values()) == {oct(0o077)}, umasks
    finally:
        procs.stop()
    # The logs the processes left, and everything else the stack holds.
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, oct(state.stat().st_mode)
    roots = [state]
    pg_root = pg_paths(stack).root
    if not pg_root.is_relative_to(state):
        roots.append(pg_root)  # as root the cluster lives where the postgres user reaches it
    exposed = [line for root in roots for line in _exposed(root)]
    assert not exposed, "readable past their owner:\n" + "\n".join(exposed)
    # The walk saw what it claims to have seen: segments, metadata, server and process logs.
    data = kafka_paths(stack).data
    assert list((data / "__cluster_metadata-0").glob("*.log")), "no KRaft metadata log seen"
    assert list(data.glob(f"mdm.{REGIONS[0]}.relay-*/*.log")), "no record segment seen"
    assert (kafka_paths(stack).logs / "server.log").exists()
    assert (logs / "sweeper-all.log").stat().st_size > 0
    shutil.rmtree(logs)


async def test_the_brokers_log_rolls_over_at_its_cap(stack):
    """The running broker was started with the stack's cap (its command line says so); denied
    requests (each logged by the authorizer) grow server.log past the cap: it rolls into
    server.log.1, no file exceeds the cap by more than one event, and no more than the
    configured number of files are kept."""
    cap, backups = stack.log_max_bytes, stack.log_backups
    assert cap <= 4 * 1024 * 1024, (
        f"MDMBUS_LOG_MAX_BYTES={cap}: this test fills the broker's log to its cap; the test "
        f"stack runs with a small one (`./run tests` sets 1 MiB)")
    pid = running_pid(stack)
    assert pid is not None, "the test stack's broker is not running"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"-Dmdmbus.log.max.bytes={cap}".encode() in argv, \
        "the running broker was started with another cap than this stack's settings"
    logs = kafka_paths(stack).logs
    rolled = logs / "server.log.1"
    first = rolled.stat().st_mtime_ns if rolled.exists() else None
    # Files last written before now may come from a broker of an older mdmbus, without a cap.
    started = time.time_ns()

    # A principal with no right on these topics asks for their metadata: every name is a
    # denial the authorizer logs, one line each.
    client = AIOKafkaAdminClient(**kafka_options(stack, f"devices-{REGIONS[0]}"))
    await client.start()
    try:
        node = next(iter(client._client.cluster.brokers())).nodeId
        names = [f"at-rest-denied-{uuid.uuid4().hex}-{i}" for i in range(200)]

        async def rolled_over() -> bool:
            await client._client.send(node, MetadataRequest(names, False))
            return rolled.exists() and rolled.stat().st_mtime_ns != first
        await wait_for(rolled_over, 180, f"server.log rolled over at {cap} bytes",
                       interval_s=0.0)
    finally:
        await client.close()
    files = sorted(logs.glob("server.log*"))
    assert len(files) <= backups + 1, [f.name for f in files]
    for f in files:
        if f.stat().st_mtime_ns < started:
            continue
        size = f.stat().st_size
        assert size <= cap + 64 * 1024, f"{f.name}: {size} bytes, cap {cap}"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{f.name}: {oct(f.stat().st_mode)}"
    assert "Denied" in rolled.read_text(errors="replace"), "the rolled file is not the log"


async def test_postgresql_collects_its_log_into_private_files_rolled_at_the_cap(stack):
    """What the running server loaded: the log collector on, a new file at the stack's cap,
    files 0600, in its data directory; and the file it writes now is within the cap."""
    conn = await pg_connect(stack, region_database(REGIONS[0]))
    try:
        loaded = {r["name"]: (r["setting"], r["unit"]) for r in await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            ["logging_collector", "log_rotation_size", "log_file_mode", "log_directory"])}
        current = await conn.fetchval("SELECT pg_current_logfile()")
    finally:
        await conn.close()
    assert loaded["logging_collector"][0] == "on", loaded
    assert loaded["log_rotation_size"] == (str(stack.log_max_bytes // 1024), "kB"), loaded
    assert loaded["log_file_mode"][0] == "0600", loaded
    path = pg_paths(stack).data / current
    assert path.parent == pg_paths(stack).data / "log", current
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size <= stack.log_max_bytes + 64 * 1024
