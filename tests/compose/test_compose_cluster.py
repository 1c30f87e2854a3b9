"""compose.yaml for real: the images build from one Debian base, the stack comes up healthy on a
three-node KRaft cluster, `mdmbus smoke` passes inside its network, and under a workload through
the gateways and the device producers it survives losing the broker that leads the most upload
and relay partitions (SIGKILL): every upload the gateway accepted stored exactly once, every
relay record in CM and gone from the cloud, no row past its deadline, no processed copy readable
past its bound, truncation going on at the new leaders; the node, restarted, is back in every
ISR. Then `down -v`, and dockerd (if started here) stopped with what it leaves on the host.

Needs root and Debian's docker.io, docker-compose and mmdebstrap (./run installs them). Host
ports: 127.0.0.1, MDMBUS_COMPOSE_PORT_BASE (default 23540) to base + 4. Every phase's wall time
is printed and written to .state/compose-e2e/timings.json.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.compose.engine import (Engine, EngineError, compose_command, ensure_base_image,
                                  host_leftovers, host_lock, run)

pytestmark = pytest.mark.compose

PROJECT = "mdmbus-e2e"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
#: Services that run to completion before the others start.
ONE_SHOT = ("mdmbus-certs", "mdmbus-init")


class Timings(dict):
    """Wall time of each phase, printed as it ends."""

    def __init__(self) -> None:
        super().__init__()
        self.began = time.monotonic()
        self._at = self.began

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self[phase] = round(now - self._at, 1)
        self._at = now
        print(f"compose e2e: {phase} {self[phase]} s (total {now - self.began:.0f} s)",
              file=sys.stderr, flush=True)


class Stack:
    """`docker compose` (or docker-compose) on the checkout's compose.yaml, as PROJECT."""

    def __init__(self, repo: Path, env_file: Path, log: Path) -> None:
        self.repo = repo
        self.log = log
        self.base = [*compose_command(), "--project-name", PROJECT, "--env-file", str(env_file),
                     "--file", str(repo / "compose.yaml")]

    def __call__(self, *args: str, timeout_s: float = 300, **kw) -> subprocess.CompletedProcess:
        return run([*self.base, *args], timeout_s, cwd=self.repo, **kw)

    def logged(self, *args: str, timeout_s: float = 300) -> None:
        run([*self.base, *args], timeout_s, cwd=self.repo, log=self.log)

    def states(self) -> dict[str, tuple[str, str, int]]:
        """service -> (status, health, exit code) of each of its containers (the last)."""
        # v2 lists stopped containers with -a only; v1 always does (and knows no -a).
        ids = self("ps", "-q", *(["-a"] if self.base[:2] == ["docker", "compose"] else []))
        out = {}
        for cid in ids.stdout.split():
            fmt = ('{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} '
                   '{{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} '
                   '{{.State.ExitCode}}')
            line = run(["docker", "inspect", "-f", fmt, cid], 30).stdout.split()
            if len(line) == 4:
                out[line[0]] = (line[1], line[2], int(line[3]))
        return out


def _wait_healthy(stack: Stack, timeout_s: float) -> dict[str, tuple[str, str, int]]:
    import yaml
    # The services `up` starts: those of no profile.
    config = yaml.safe_load(stack("config").stdout)
    services = {name for name, s in config["services"].items() if not s.get("profiles")}
    deadline = time.monotonic() + timeout_s
    while True:
        states = stack.states()
        bad = {s: st for s, st in states.items()
               if s in ONE_SHOT and st[0] == "exited" and st[2] != 0}
        assert not bad, f"a one-shot service failed: {bad} (see {stack.log})"
        waiting = sorted(s for s in services
                         if s not in states
                         or (s in ONE_SHOT and states[s][:1] != ("exited",))
                         or (s not in ONE_SHOT and states[s][:2] != ("running", "healthy")))
        if not waiting:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy within {timeout_s:.0f} s: "
                                 f"{ {s: states.get(s) for s in waiting} } (see {stack.log})")
        time.sleep(2)


class Driver:
    """tests/compose/driver.py in a container of the mdmbus image on the compose network,
    as the provisioning service (its settings, the state volume), with this checkout's tests
    mounted read-only and pytest installed from wheels made on the host."""

    def __init__(self, stack: Stack, repo: Path, log: Path) -> None:
        script = ("set -e; pip install -q --no-index --find-links /src/.build/test-wheels "
                  "--target /tmp/site pytest >/dev/null; "
                  "PYTHONPATH=/src:/tmp/site exec python -m tests.compose.driver")
        self.proc = subprocess.Popen(
            [*stack.base, "run", "--rm", "-T", "--no-deps",
             "-v", f"{repo}/tests:/src/tests:ro",
             "-v", f"{repo}/.build/test-wheels:/src/.build/test-wheels:ro",
             "--entrypoint", "/bin/sh", "mdmbus-init", "-c", script],
            cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(log, "ab"), text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.log = log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with open(self.log, "a") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                self.lines.put(line)
        self.lines.put(None)

    def expect(self, name: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"driver: no {name} within {timeout_s:.0f} s "
                                     f"(see {self.log})") from None
            if line is None:
                raise AssertionError(f"driver exited ({self.proc.wait()}) before {name}: "
                                     + self.log.read_text(errors="replace")[-3000:])
            if line.startswith(name + " "):
                return json.loads(line[len(name) + 1:])

    def say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def _env_file(path: Path) -> Path:
    base = int(os.environ.get("MDMBUS_COMPOSE_PORT_BASE", "23540"))
    path.write_text("\n".join([
        "MDMBUS_PG_USER=mdmbus",
        f"MDMBUS_PG_PASSWORD={secrets.token_urlsafe(18)}",
        "GRAFANA_ADMIN_USER=admin",
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_urlsafe(18)}",
        "MDMBUS_CLOCK_SPEED=1",
        "MDMBUS_CLOCK_ORIGIN=0",
        f"MDMBUS_GATEWAY_HOST_PORT_NA={base + 1}",
        f"MDMBUS_GATEWAY_HOST_PORT_EU={base + 2}",
        f"MDMBUS_GATEWAY_HOST_PORT_AP={base + 3}",
        f"MDMBUS_PROMETHEUS_HOST_PORT={base + 4}",
        f"GRAFANA_HOST_PORT={base}",
        ""]))
    path.chmod(0o600)
    return path


def _project_leftovers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    left = []
    for kind in ("container", "volume", "network"):
        args = ["docker", kind, "ls", "-q", "--filter", label] + (["-a"] if kind == "container" else [])
        left += [f"{kind} {i}" for i in run(args, 60).stdout.split()]
    replaced = ["docker", "image", "ls", "-q", "--filter", "dangling=true", "--filter",
                "label=io.mdmbus.built"]
    left += [f"replaced image {i}" for i in run(replaced, 60).stdout.split()]
    return left


def _remove_project(stack: Stack) -> None:
    """`down -v`, after removing every container of the project (the driver's one-off one as
    well: killing `compose run` leaves its container running, and a network with a container
    on it cannot be removed); then whatever volume or network is still labelled with it."""
    label = f"label=com.docker.compose.project={PROJECT}"
    ids = run(["docker", "ps", "-aq", "--filter", label], 60).stdout.split()
    if ids:
        run(["docker", "rm", "-f", "-v", *ids], 180, log=stack.log)
    stack.logged("down", "-v", "--remove-orphans", "--timeout", "30", timeout_s=300)
    for kind in ("volume", "network"):
        ids = run(["docker", kind, "ls", "-q", "--filter", label], 60).stdout.split()
        if ids:
            run(["docker", kind, "rm", *ids], 120, log=stack.log)
    # The images a newer build replaced (untagged; ~0.4 GB each time the mdmbus image is
    # rebuilt); the current ones stay, the next build's cache.
    run(["docker", "image", "prune", "-f", "--filter", "label=io.mdmbus.built"], 120,
        log=stack.log)


#: Held for the whole test (engine.host_lock); a run waits this long for another's to end.
HOST_LOCK = Path("/run/lock/mdmbus-compose-e2e.lock")
LOCK_WAIT_S = 1800


def test_compose_cluster_survives_losing_a_broker(repo_root: Path) -> None:
    with host_lock(HOST_LOCK, LOCK_WAIT_S):
        _compose_cluster_survives_losing_a_broker(repo_root)


def _compose_cluster_survives_losing_a_broker(repo_root: Path) -> None:
    work = repo_root / ".state" / "compose-e2e"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("dockerd.log", "compose.log", "driver.log"):
        (work / name).write_text("")
    timings = Timings()
    engine = Engine(work / "dockerd.log")
    engine.start()
    timings.mark("dockerd")
    stack = Stack(repo_root, _env_file(work / "env"), work / "compose.log")
    driver = None
    try:
        leftover = _project_leftovers()
        if leftover:  # a run killed before its clean-up (this one's end asserts it has none)
            print(f"compose e2e: removing what an interrupted run left: {leftover}",
                  file=sys.stderr)
            _remove_project(stack)
        if ensure_base_image(work / "compose.log"):
            timings.mark("base image (mmdebstrap + docker import)")
        python = str(repo_root / ".venv" / "bin" / "python")
        run([str(repo_root / "ops" / "compose" / "prepare")], 900, log=work / "compose.log",
            env=dict(os.environ, PYTHON=python))
        run([python, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w",
             str(repo_root / ".build" / "test-wheels"), f"pytest=={pytest.__version__}"], 300,
            log=work / "compose.log")
        timings.mark("prepare (wheels, Kafka jars)")
        stack.logged("build", timeout_s=1200)
        timings.mark("build")
        stack.logged("up", "-d", timeout_s=600)
        states = _wait_healthy(stack, 600)
        timings.mark("up, healthy")
        assert {s for s, st in states.items() if st[:2] == ("running", "healthy")} >= \
            {*KAFKA_NODES, "pipeline-na", "pipeline-eu", "pipeline-ap", "gateway-na",
             "gateway-eu", "gateway-ap", "cm-connector", "prometheus"}

        smoke = stack("run", "--rm", "-T", "--no-deps", "mdmbus-init", "smoke", timeout_s=180)
        print(smoke.stdout, file=sys.stderr)
        timings.mark("smoke")

        driver = Driver(stack, repo_root, work / "driver.log")
        driver.expect("ONBOARDED", 240)
        leaders = driver.expect("LEADERS", 300)
        timings.mark("workload until the kill")
        victim = f"kafka-{leaders['victim']}"
        assert victim in KAFKA_NODES and leaders["led"] > 0
        assert leaders["written_to_led"] > 0, "the node to kill leads no partition with records"
        stack.logged("kill", "-s", "SIGKILL", victim, timeout_s=60)
        assert stack.states()[victim][0] == "exited"
        driver.say("killed")
        checked = driver.expect("CHECKED", 600)
        timings.mark("failover, workload, checks")
        assert checked["accepted_uploads"] > 0 and checked["relays"] > 0
        stack.logged("start", victim, timeout_s=120)
        driver.say("restarted")
        isr = driver.expect("ISR", 300)
        assert driver.proc.wait(60) == 0, f"driver failed (see {driver.log})"
        timings.mark("broker back in every ISR")
        assert isr["replicas"] == [3]
        print(f"compose e2e: killed {victim} (led {leaders['led']} partitions; leaders "
              f"{leaders['leaders']}): {json.dumps(checked)}; {json.dumps(isr)}",
              file=sys.stderr)
    finally:
        if driver is not None:
            driver.stop()
        try:
            stack.logged("logs", "--no-color", "--timestamps", timeout_s=120)
            try:
                _remove_project(stack)
            except EngineError:
                # Seen once on a loaded machine: dockerd stopped answering `rm` of the killed
                # containers (left "Dead"); a dockerd started again removed them in seconds.
                if not engine.started_here:
                    raise
                print("compose e2e: removal stuck; starting dockerd again to finish it",
                      file=sys.stderr, flush=True)
                engine.stop()
                engine.start()
                _remove_project(stack)
        finally:
            engine.stop()
            timings.mark("down -v, dockerd stopped")
            (work / "timings.json").write_text(json.dumps(timings, indent=1))
    # Nothing left: no container, network or volume of the project, no image a build replaced;
    # and when dockerd was started here, no docker0 link, bridge or iptables chain of its.
    if engine.answers():
        assert _project_leftovers() == []
    else:
        assert host_leftovers() == []
        # ... and what dockerd keeps across restarts holds nothing of the project either.
        engine.start()
        try:
            assert _project_leftovers() == []
        finally:
            engine.stop()
    total = time.monotonic() - timings.began
    print(f"compose e2e: {total:.0f} s in all: {json.dumps(timings)}", file=sys.stderr)
