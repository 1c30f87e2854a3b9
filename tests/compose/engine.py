"""The container engine for the compose test: Debian's dockerd and docker-compose, a Debian base
image made with mmdebstrap when no registry can provide one, and the host cleaned of what dockerd
leaves behind when it stops (its docker0 link and iptables chains).

Every command runs with a time bound and fails with what it printed: a missing or broken engine
is a clear error, never a hang.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["EngineError", "run", "Engine", "compose_command", "ensure_base_image",
           "host_leftovers", "host_lock", "BASE_IMAGE"]

#: What the Dockerfiles build FROM (their ARG BASE); made here when the engine lacks it.
BASE_IMAGE = "debian:bookworm-slim"
#: The iptables chains dockerd creates (filter and nat tables), which outlive it.
_CHAINS = {"filter": ("DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2",
                      "DOCKER-USER"),
           "nat": ("DOCKER",)}


class EngineError(AssertionError):
    pass


@contextlib.contextmanager
def host_lock(path: Path, timeout_s: float):
    """One compose test at a time on this host: two runs (two checkouts' `./run tests`) would
    share dockerd, the project's name and its ports, and the first to finish would stop
    dockerd under the other. The second waits for the first, up to ``timeout_s``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as held:
        deadline = time.monotonic() + timeout_s
        said = False
        while True:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EngineError(f"another compose test held {path} for {timeout_s:.0f} s"
                                      ) from None
                if not said:
                    print(f"compose e2e: waiting for another run's compose test ({path})",
                          file=sys.stderr, flush=True)
                    said = True
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def run(cmd: list[str], timeout_s: float, check: bool = True, log: Path | None = None,
        **kw) -> subprocess.CompletedProcess:
    """Runs ``cmd`` to completion within ``timeout_s``; its output goes to ``log`` (appended)
    or is captured. A failure or a timeout raises EngineError with the output's tail."""
    started = time.monotonic()
    try:
        if log is not None:
            with open(log, "ab") as out:
                out.write(f"\n$ {' '.join(cmd)}\n".encode())
                out.flush()
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=timeout_s, **kw)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, **kw)
    except subprocess.TimeoutExpired:
        raise EngineError(f"{' '.join(cmd)}: no result within {timeout_s:.0f} s"
                          + (f" (see {log})" if log else "")) from None
    except FileNotFoundError:
        raise EngineError(f"{cmd[0]} not found: ./run installs docker.io, docker-compose and "
                          f"mmdebstrap (Debian packages); install them, then rerun") from None
    if check and proc.returncode != 0:
        tail = (log.read_text(errors="replace")[-3000:] if log is not None
                else (proc.stdout or "")[-1500:] + (proc.stderr or "")[-1500:])
        raise EngineError(f"{' '.join(cmd)} failed (exit {proc.returncode}, after "
                          f"{time.monotonic() - started:.0f} s):\n{tail}")
    return proc


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the engine has it, else v1 (`docker-compose`)."""
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineError("neither `docker compose` nor `docker-compose` is installed: ./run installs "
                      "Debian's docker-compose; install it, then rerun")


class Engine:
    """A dockerd that answers: the one running already (left running), or one started here,
    which :meth:`stop` stops and cleans up after."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def answers() -> bool:
        if not shutil.which("docker"):
            return False
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=30).returncode == 0

    def start(self, timeout_s: float = 60) -> None:
        if self.answers():
            return
        if os.geteuid() != 0:
            raise EngineError("dockerd is not running and only root can start it: run the "
                              "tests as root, or start dockerd first")
        if not shutil.which("dockerd") or not shutil.which("docker"):
            raise EngineError("dockerd or docker not found: ./run installs Debian's docker.io; "
                              "install it, then rerun")
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"dockerd did not start within {timeout_s:.0f} s:\n"
                                  + self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.2)

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def stop(self, timeout_s: float = 60) -> None:
        """Stops the dockerd started here (nothing else), then removes the docker0 link and
        the iptables chains it leaves."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None
        remove_host_leftovers()


def _iptables_rules(table: str) -> list[str]:
    return run(["iptables", "-t", table, "-S"], 30).stdout.splitlines()


def remove_host_leftovers() -> None:
    """The docker0 link, and every iptables rule and chain of dockerd's."""
    if subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0:
        run(["ip", "link", "delete", "docker0"], 30)
    if not shutil.which("iptables"):
        return
    for table, chains in _CHAINS.items():
        for rule in _iptables_rules(table):
            # Rules of the built-in chains that send to docker's chains or name docker0.
            parts = rule.split()
            if parts[0] == "-A" and parts[1] not in chains and (
                    "docker0" in parts or any(c in parts for c in chains)):
                run(["iptables", "-t", table, "-D", *parts[1:]], 30)
        present = {r.split()[1] for r in _iptables_rules(table) if r.startswith("-N ")}
        for chain in chains:
            if chain in present:
                run(["iptables", "-t", table, "-F", chain], 30)
        for chain in chains:
            if chain in present:
                run(["iptables", "-t", table, "-X", chain], 30)


def host_leftovers() -> list[str]:
    """What of dockerd remains on the host (empty: nothing)."""
    left = []
    if subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0:
        left.append("the docker0 link")
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                             text=True).stdout
    left += [f"bridge {line.split(':')[1].strip()}" for line in bridges.splitlines()
             if line.split(":")[1].strip().startswith("br-")]
    if shutil.which("iptables"):
        for table, chains in _CHAINS.items():
            left += [f"iptables -t {table}: {rule}" for rule in _iptables_rules(table)
                     if any(c in rule.split() for c in chains) or "docker0" in rule.split()]
    return left


def ensure_base_image(log: Path, timeout_s: float = 600) -> bool:
    """Imports a minimal Debian bookworm (mmdebstrap) as BASE_IMAGE when the engine lacks it;
    returns whether it did."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True,
                      timeout=30).returncode == 0:
        return False
    if not shutil.which("mmdebstrap"):
        raise EngineError(f"{BASE_IMAGE} is not in the engine and mmdebstrap, which makes it, is "
                          f"not installed: ./run installs it (apt-get install mmdebstrap)")
    run(["bash", "-c", f"set -o pipefail; mmdebstrap --variant=minbase --quiet bookworm - "
         f"| docker import - {BASE_IMAGE}"], timeout_s, log=log)
    return True
