"""`mdmbus stack` behaves for an operator: clear errors, idempotent, status says where."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from mdmbus.identities import pg_roles

pytestmark = pytest.mark.integration


def _mdmbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mdmbus", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), timeout=300)


def test_status_of_the_running_stack_says_what_runs_where(stack):
    out = _mdmbus("stack", "status")
    assert out.returncode == 0, out.stderr
    assert f"127.0.0.1:{stack.kafka_port}" in out.stdout
    assert f"127.0.0.1:{stack.pg_port}" in out.stdout
    assert "kafka     running" in out.stdout and "postgres  running" in out.stdout


def test_up_twice_is_harmless(stack):
    out = _mdmbus("stack", "up")
    assert out.returncode == 0, out.stderr
    assert "already running" in out.stdout
    assert "created" not in out.stdout
    # the identities and their rights were already as declared: nothing granted or revoked
    assert (f"database identities: {len(pg_roles())} roles, their rights as declared "
            "(no change)") in out.stdout
    assert "ACLs as declared (no change)" in out.stdout


def test_port_in_use_stops_up_with_one_line_saying_what_to_do(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(os.environ, MDMBUS_STATE_DIR=str(tmp_path / "state"),
                   MDMBUS_PG_PORT=str(port), MDMBUS_KAFKA_PORT="1", MDMBUS_KAFKA_CONTROLLER_PORT="2")
        out = _mdmbus("stack", "up", env=env)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1, out.stderr
    assert f"port {port}" in out.stderr and "MDMBUS_PG_PORT" in out.stderr
    # Nothing was started: the check runs before any server.
    assert not (tmp_path / "state" / "kafka").exists()
    _purge(env)


def test_down_after_a_crash_cleans_stale_pid_files(tmp_path):
    state = tmp_path / "state"
    (state / "kafka").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / "kafka" / "kafka.pid").write_text(f"{dead.pid}\n")
    env = dict(os.environ, MDMBUS_STATE_DIR=str(state))
    out = _mdmbus("stack", "down", env=env)
    assert out.returncode == 0, out.stderr
    assert "kafka: not running" in out.stdout
    assert not (state / "kafka" / "kafka.pid").exists()
    _purge(env)


def _purge(env: dict[str, str]) -> None:
    """Removes what a throw-away stack of a test left (its PostgreSQL directory in /var/tmp
    when run as root is made as soon as the stack is looked at)."""
    assert _mdmbus("stack", "down", "--purge", env=env).returncode == 0


def test_a_bad_setting_is_named(tmp_path):
    env = dict(os.environ, MDMBUS_PG_PORT="fivefivefour")
    out = _mdmbus("stack", "status", env=env)
    assert out.returncode == 1
    assert "MDMBUS_PG_PORT='fivefivefour' is not a whole number" in out.stderr


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_down_purge_leaves_nothing_of_a_stack_behind(tmp_path):
    """A whole second stack (own state directory and ports) is made and purged: afterwards no
    process of it runs, no port of it listens, and neither its state directory nor its
    PostgreSQL cluster (in /var/tmp when run as root) exists; what the purge removes is read
    from the stack's own pointer before it runs."""
    state = tmp_path / "state"
    ports = {"MDMBUS_KAFKA_PORT": 25590, "MDMBUS_KAFKA_CONTROLLER_PORT": 25591,
             "MDMBUS_KAFKA_BROKER_PORT": 25592, "MDMBUS_PG_PORT": 25593}
    env = dict(os.environ, MDMBUS_STATE_DIR=str(state), **{k: str(v) for k, v in ports.items()})
    try:
        up = _mdmbus("stack", "up", env=env)
        assert up.returncode == 0, up.stderr
        cluster = (state / "postgres.location").read_text().strip() \
            if (state / "postgres.location").exists() else str(state / "postgres")
        assert os.path.isdir(cluster)
        assert all(_listening(p) for p in ports.values() if p != 25591)
    finally:
        down = _mdmbus("stack", "down", "--purge", env=env)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert not os.path.exists(cluster), f"{cluster} outlived the purge"
    assert not any(_listening(p) for p in ports.values())
    survivors = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert survivors.stdout == "", survivors.stdout
