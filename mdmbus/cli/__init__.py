"""The `mdmbus` command: the stack, producing records, and the demo."""

from __future__ import annotations

import argparse
import sys

from mdmbus.errors import MdmbusError, UsageError
from mdmbus.settings import Settings

__all__ = ["main"]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus import stack
    if args.action == "up":
        stack.up(settings)
        return 0
    if args.action == "down":
        stack.down(settings)
        return 0
    return 0 if stack.status(settings) else 3


def _provision(settings: Settings) -> int:
    from mdmbus import stack
    stack.provision_servers(settings)
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.produce import produce
    if args.file == "-":
        return produce(settings, sys.stdin, dry_run=args.dry_run)
    try:
        source = open(args.file, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with source:
        return produce(settings, source, dry_run=args.dry_run)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import json
    import uuid

    from mdmbus.contract import default_registry, to_json
    from mdmbus.services.export import export_tenant
    from mdmbus.services.stores.pools import Stores

    try:
        tenant = uuid.UUID(args.tenant)
    except ValueError:
        raise UsageError(f"--tenant {args.tenant!r} is not a uuid") from None
    registry = default_registry()

    async def run() -> int:
        stores = await Stores(settings).start()
        count = 0
        try:
            async for kind, record in export_tenant(stores, tenant, registry):
                print(json.dumps({"kind": kind,
                                  "record": to_json(registry.spec(kind).expanded, record)}))
                count += 1
        finally:
            await stores.close()
        print(f"exported {count} records of tenant {tenant}", file=sys.stderr)
        return 0
    return asyncio.run(run())


def _process(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.processes import run_process
    return run_process(args.name, settings)


def _smoke(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.smoke import run_smoke
    return run_smoke(settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.demo import run_demo
    return run_demo(settings, speed=args.speed, duration=args.duration, rate=args.rate,
                    tenants=args.tenants, start_processes=not args.no_processes,
                    metrics_base_port=args.metrics_base_port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdmbus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the embedded Kafka + PostgreSQL stack on 127.0.0.1")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=_stack)

    p = sub.add_parser("provision", help="create topics and databases on servers that already "
                                         "run (compose, or MDMBUS_KAFKA_BOOTSTRAP + PG settings)")
    p.set_defaults(func=lambda args, settings: _provision(settings))

    p = sub.add_parser("produce", help="validate JSON lines and send them to their topics",
                       epilog="exit status: 0 every line sent (or valid, with --dry-run); 1 some "
                              "lines rejected by the contract, the others sent; 2 bad arguments "
                              "or an unreadable file; 3 Kafka could not be reached (lines read "
                              "before may have been sent; the summary says how many); 4 Kafka "
                              "refused some records, named by line, the others sent")
    p.add_argument("file", nargs="?", default="-",
                   help='JSON lines, one {"kind": ..., "record": {...}} per line (default: stdin)')
    p.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    p.set_defaults(func=_produce)

    p = sub.add_parser("export", help="a tenant's stored records as JSON lines (works during "
                                      "retention, until the purge)")
    p.add_argument("--tenant", required=True, help="tenant id (uuid)")
    p.set_defaults(func=_export)

    p = sub.add_parser("process", help="run one pipeline process in the foreground")
    p.add_argument("name", choices=["pipeline", "cm-connector", "sweeper"])
    p.set_defaults(func=_process)

    p = sub.add_parser("smoke", help="a round trip through the running stack")
    p.set_defaults(func=_smoke)

    p = sub.add_parser("demo", help="the pipeline with simulated CM and devices (./run demo)")
    p.add_argument("--speed", type=float, default=400_000.0,
                   help="simulated seconds per real second (default 400000: 90 + 30 days in 26 s)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many real seconds (default: run until Ctrl-C)")
    p.add_argument("--rate", type=float, default=200.0, help="records per real second")
    p.add_argument("--tenants", type=int, default=24, help="tenants at any time")
    p.add_argument("--metrics-base-port", type=int, default=9101,
                   help="/metrics of pipeline, cm-connector, sweeper on this port and the next two")
    p.add_argument("--no-processes", action="store_true",
                   help="only simulate; the pipeline processes run elsewhere (compose)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except MdmbusError as exc:
        print(f"mdmbus: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("mdmbus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mdmbus export ... | head`: the reader had enough
        sys.stderr.close()
        return 0

