"""The one process launcher: starts mdmbus processes as subprocesses (``python -m mdmbus
process NAME --region R``) sharing one clock, each with its log file and, optionally, a
/metrics port. The demo, the benchmarks and the tests all start processes through it.

Each process runs with umask 077; its output goes through a pipe into its log file, which
is 0600 and rolls over at MDMBUS_LOG_MAX_BYTES (mdmbus/logfiles.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from mdmbus.clock import Clock
from mdmbus.errors import MdmbusError
from mdmbus.logfiles import LogPump
from mdmbus.settings import Settings

__all__ = ["Launcher", "end_process"]


def end_process(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Launcher:
    log_dir: Path
    clock: Clock
    #: The environment every process gets (the caller's MDMBUS_* settings), before the clock.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    pumps: dict[str, LogPump] = field(default_factory=dict)

    def environment(self, metrics_port: int | None = None,
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of one process. A /metrics port belongs to one process, so the
        caller's MDMBUS_METRICS_PORT is never inherited (two processes would both bind it):
        a process serves /metrics only on the port given for it here."""
        env = dict(self.env, MDMBUS_CLOCK_SPEED=repr(self.clock.speed),
                   MDMBUS_CLOCK_ORIGIN=repr(self.clock.origin), PYTHONUNBUFFERED="1",
                   MDMBUS_METRICS_PORT=str(metrics_port or 0))
        env.update(extra or {})
        return env

    def start(self, name: str, region: str | None = "all", *, key: str | None = None,
              metrics_port: int | None = None, env: Mapping[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> str:
        """Starts ``name`` (for ``region``; None for a process without one) and returns its
        key (``name-region`` unless given). ``prefix`` wraps the command (e.g. a profiler)."""
        key = key or (name if region is None else f"{name}-{region}")
        if key in self.procs and self.procs[key].poll() is None:
            raise RuntimeError(f"{key} is already running (pid {self.procs[key].pid})")
        previous = os.umask(0o077)  # the log directory and its parents: private
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        finally:
            os.umask(previous)
        argv = [*prefix, sys.executable, "-m", "mdmbus", "process", name]
        if region is not None:
            argv += ["--region", region]
        environment = self.environment(metrics_port, env)
        try:
            limits = Settings.from_env(environment)
        except MdmbusError:  # a test's deliberately bad setting: the process says so itself
            limits = Settings()
        proc = self.procs[key] = subprocess.Popen(
            argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077)
        assert proc.stdout is not None  # stdout=PIPE
        self.pumps[key] = LogPump(proc.stdout, self.log_dir / f"{key}.log",
                                  limits.log_max_bytes, limits.log_backups)
        return key

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` and waits for the process to end."""
        proc = self.procs.pop(key)
        proc.send_signal(sig)
        proc.wait(60)
        self._drain(key)

    def stop(self, *keys: str) -> None:
        """Ends the given processes (all by default): SIGTERM, then SIGKILL after 30 s."""
        for key in keys or list(self.procs):
            proc = self.procs.pop(key, None)
            if proc is not None:
                end_process(proc)
            self._drain(key)

    def _drain(self, key: str) -> None:
        pump = self.pumps.pop(key, None)
        if pump is not None:
            pump.join()

    def exited(self) -> dict[str, int]:
        """The processes that have ended, with their exit status."""
        return {k: p.returncode for k, p in self.procs.items() if p.poll() is not None}

    def assert_alive(self) -> None:
        for key, status in self.exited().items():
            raise AssertionError(f"{key} exited with {status}:\n{self.tail(key)}")

    def tail(self, key: str, lines: int = 40) -> str:
        path = self.log_dir / f"{key}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
