"""Free TCP ports for the tests that start a server of their own (a scratch PostgreSQL, a
process's metrics, a listener): the kernel picks them, so two runs on one machine, or one
test and the stack, never ask for the same port."""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_ports"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port no socket on ``host`` holds right now."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` different free ports: each held until all are chosen, so none is picked twice."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
