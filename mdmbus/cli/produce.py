"""`mdmbus produce`: JSON lines in, validated single-object-encoded records out to Kafka.

A bad line is reported with its number and reason and not sent; the good ones around it are.
Progress goes to stderr every second; a summary (sent, refused by reason, refused by Kafka by
error) ends the run. Exit status (the ``--help`` epilog says the same):

- 0: every line sent (with ``--dry-run``: every line valid);
- 1: some lines refused by the contract, the others sent;
- 2: bad arguments or an unreadable file (mdmbus.errors.UsageError);
- 3: Kafka could not be reached, or stopped answering: lines read before may have been sent
  (the summary says how many were acknowledged);
- 4: Kafka refused some records for good (too large for the broker, not authorised, ...),
  each named by its line; the others were sent.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import sys
import time
import uuid
from typing import IO, AsyncIterator, Iterable, Iterator

from mdmbus.contract import default_registry
from mdmbus.errors import MdmbusError
from mdmbus.producer import (INVALID_JSON, RefusedByKafka, KafkaUnreachable, Produced, RefusedLine,
                             parse_line, send_all)
from mdmbus.settings import Settings

__all__ = ["produce", "SendError", "REFUSED_EXIT", "KAFKA_REFUSED_EXIT"]

#: Exit status when some lines were refused (the others were sent).
REFUSED_EXIT = 1
#: Exit status when Kafka refused some records for good (the others were sent).
KAFKA_REFUSED_EXIT = 4


class SendError(MdmbusError):
    """Kafka could not be reached: not the input's fault, so a script can tell it from
    refused lines and retry."""

    exit_status = 3


def produce(settings: Settings, source: IO[str], dry_run: bool = False,
            out: IO[str] = sys.stdout, err: IO[str] = sys.stderr,
            region: str | None = None) -> int:
    """Returns the exit status (module docstring); raises SendError (exit status 3) when Kafka
    cannot be reached."""
    registry = default_registry()
    refused: collections.Counter[str] = collections.Counter()
    counts = {"read": 0, "valid": 0}
    last_progress = [time.monotonic()]

    def good_lines() -> Iterable[Produced]:
        for number, text in enumerate(_lines(source), start=1):
            if isinstance(text, UnicodeDecodeError):  # JSON text is UTF-8 (RFC 8259)
                item: Produced | RefusedLine = RefusedLine(number, INVALID_JSON,
                                                           f"not UTF-8: {text}")
            elif not text.strip():
                continue
            else:
                item = parse_line(text, number, registry)
            counts["read"] += 1
            if isinstance(item, RefusedLine):
                refused[item.reason] += 1
                print(f"line {item.line}: refused ({item.reason}): {item.message}", file=err)
                continue
            counts["valid"] += 1
            now = time.monotonic()
            if now - last_progress[0] >= 1.0:
                print(f"... {counts['read']} lines read, {counts['valid']} valid", file=err)
                last_progress[0] = now
            yield item

    kafka_refused: list[RefusedByKafka] = []
    unreachable: KafkaUnreachable | None = None
    def refuse(line: RefusedLine) -> None:
        refused[line.reason] += 1
        print(f"line {line.line}: refused ({line.reason}): {line.message}",
              file=err)

    if dry_run:
        for _ in good_lines():
            pass
        sent = 0
    else:
        try:
            sent, kafka_refused = asyncio.run(_send(settings, good_lines(), region, refuse))
        except KafkaUnreachable as exc:
            sent, unreachable = exc.sent, exc
    for refusal in kafka_refused:
        print(refusal, file=err)
    verb = "valid (dry run, nothing sent)" if dry_run else "sent"
    n = counts["valid"] if dry_run else sent
    summary = f"{n} {verb}, {sum(refused.values())} refused"
    if refused:
        summary += " (" + ", ".join(f"{r}: {c}" for r, c in sorted(refused.items())) + ")"
    if kafka_refused:
        by_error = collections.Counter(r.error for r in kafka_refused)
        summary += f", {len(kafka_refused)} refused by Kafka (" + ", ".join(
            f"{e}: {c}" for e, c in sorted(by_error.items())) + ")"
    print(summary, file=out)
    if unreachable is not None:
        raise SendError(f"cannot send to Kafka at {settings.kafka_bootstrap} ({unreachable}); "
                        f"{sent} records were acknowledged before")
    if kafka_refused:
        return KAFKA_REFUSED_EXIT
    return REFUSED_EXIT if refused else 0


def _lines(source: IO[str]) -> Iterator[str | UnicodeDecodeError]:
    """The lines of ``source``, each decoded on its own: a line that is not UTF-8 comes as its
    error, so it is refused like any bad line instead of ending the run (decoding the whole
    stream as text would raise mid-file, after the lines before it were sent)."""
    raw = getattr(source, "buffer", None)
    if raw is None:  # already text (e.g. io.StringIO)
        yield from source
        return
    for line in raw:
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield exc


async def _routed(settings: Settings, items: Iterable[Produced], region: str | None,
                  refuse) -> AsyncIterator[Produced]:
    """Each record addressed to its tenant's region's topic: the region given, or the one the
    tenant directory holds (looked up a chunk of lines at a time). A record of a tenant the
    directory does not know, or whose data was deleted, is refused as the pipeline would."""
    from mdmbus.services.rules.refusals import Refusal, message
    from mdmbus.services.stores import directory
    from mdmbus.identities import role_of
    from mdmbus.services.stores.pools import open_pool
    from mdmbus.regions import DIRECTORY_DATABASE
    from mdmbus.topics import spec_of
    if region is not None:
        for item in items:
            yield item.to(region if spec_of(item.topic).regional else None)
        return
    pool = await open_pool(settings, DIRECTORY_DATABASE, role_of("directory-reader"), max_size=1,
                           application="mdmbus-produce")
    try:
        known: dict[str, directory.Entry | None] = {}
        chunk: list[Produced] = []
        iterator = iter(items)
        while True:
            chunk = list(itertools.islice(iterator, 500))
            if not chunk:
                return
            wanted = {uuid.UUID(i.tenant_id) for i in chunk if i.tenant_id not in known}
            if wanted:
                found = await directory.entries(pool, wanted)
                known.update({str(t): found.get(t) for t in wanted})
            for item in chunk:
                spec = spec_of(item.topic)
                if not spec.regional:
                    yield item.to(None)
                    continue
                entry = known[item.tenant_id]
                if entry is not None and entry.state != directory.PURGED:
                    yield item.to(entry.region)
                    continue
                reason = (Refusal.TENANT_NOT_ONBOARDED if entry is None
                          else Refusal.TENANT_DELETED)
                refuse(RefusedLine(item.line, reason, message(reason)))
    finally:
        await pool.close()


async def _send(settings: Settings, items: Iterable[Produced], region: str | None,
                refuse) -> tuple[int, list[RefusedByKafka]]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from mdmbus.connections import producer_options
    producer = AIOKafkaProducer(**producer_options(settings, settings.kafka_principal,
                                                   linger_ms=5))
    try:
        try:
            await producer.start()
        except KafkaError as exc:
            raise KafkaUnreachable(exc, 0) from exc
        return await send_all(producer, _routed(settings, items, region, refuse))
    finally:
        await producer.stop()
