"""Pid files, ports and deadlines: the small process plumbing both servers share."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

from mdmbus.stack.errors import StackError

__all__ = ["read_pid", "pid_alive", "port_open", "ensure_port_free", "wait_until",
           "stop_pid", "tail"]


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if it names a live process; a stale file is removed."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if pid_alive(pid):
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def ensure_port_free(port: int, what: str, env_var: str) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} on 127.0.0.1 is already in use by another process, so {what} cannot "
            f"start: stop that process or choose another port with {env_var}=<port>"
        )


def wait_until(check: Callable[[], bool], deadline_s: float, what: str,
               alive: Callable[[], bool] | None = None, log: Path | None = None) -> None:
    """Poll ``check`` until it is true; fail early if the process died, late at the deadline."""
    end = time.monotonic() + deadline_s
    delay = 0.1
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what} exited during start-up; see {log}:\n{tail(log)}")
        if time.monotonic() > end:
            raise StackError(f"{what} did not answer within {deadline_s:.0f} s; see {log}:\n"
                             f"{tail(log)}\n(raise MDMBUS_START_TIMEOUT on a slow machine)")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def stop_pid(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM, wait for a clean exit, SIGKILL after ``grace_s``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + grace_s
    while pid_alive(pid):
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    # Reap it if it is our child (it is not when another `mdmbus` invocation started it).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path | None, lines: int = 12) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in text[-lines:])
