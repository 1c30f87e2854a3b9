"""Entry point of a pipeline worker: the faust app with every agent registered."""

from __future__ import annotations

import sys

from mdmbus.streams import acks, ingest, lifecycle, sessions  # noqa: F401  (registers the agents)
from mdmbus.streams.app import app

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    # faust's own web server is not used (metrics come from prometheus-client); --without-web
    # also lets several workers share a machine without fighting over port 6066.
    sys.argv = ["mdmbus-pipeline", "worker", "--loglevel", "info", "--without-web", *(argv or [])]
    app.main()
