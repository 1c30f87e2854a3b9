"""`mdmbus stack up | down | status`: both servers, then what the pipeline needs in them."""

from __future__ import annotations

import asyncio
from typing import Callable

from mdmbus.settings import Settings
from mdmbus.stack import kafka, postgres, provision

__all__ = ["up", "down", "status"]


def up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Idempotent: what runs is left running, what is missing is started or created."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    say(postgres.start(settings))
    say(kafka.start(settings, say))
    created = asyncio.run(provision.ensure_databases(settings))
    say(f"databases: {'created ' + ', '.join(created) if created else 'all present'}")
    created = asyncio.run(provision.ensure_topics(settings))
    say(f"topics: {'created ' + ', '.join(created) if created else 'all present, configs applied'}")


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stops both servers; stale pid files from a crash are cleaned, not an error."""
    say(kafka.stop(settings))
    say(postgres.stop(settings))


def status(settings: Settings, say: Callable[[str], None] = print) -> bool:
    """Prints what runs where; true when both servers run."""
    lines = [kafka.describe(settings), postgres.describe(settings)]
    for line in lines:
        say(line)
    return all(" running " in line or " external " in line for line in lines)
