"""The `mdmbus` command: the stack, producing records, tokens, dead letters, the processes and
the demo. Each command's work is in a module of its own here; this one only parses."""

from __future__ import annotations

import argparse
import os
import sys

from mdmbus.errors import MdmbusError, UsageError
from mdmbus.settings import Settings

__all__ = ["main"]


def _regions(text: str) -> tuple[str, ...]:
    from mdmbus.regions import parse_regions
    try:
        return parse_regions(text)
    except ValueError as exc:
        raise UsageError(f"--region: {exc}") from None


def _one_region(text: str) -> str:
    regions = _regions(text)
    if len(regions) != 1:
        raise UsageError("--region: give one region (na, eu or ap)")
    return regions[0]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus import stack
    if args.action == "client-config":
        from mdmbus.stack.client_config import write_client_config
        if not args.principal:
            raise UsageError("client-config: --principal NAME is required")
        text = write_client_config(settings, args.principal, args.auth, args.format, args.output)
        if text is not None:
            sys.stdout.write(text)
        else:
            print(f"wrote {args.output} (mode 0600: it holds a secret)", file=sys.stderr)
        return 0
    if args.action == "credentials":
        stack.credentials(settings)
        print(f"credentials: certificates in {settings.pki_dir}, passwords in "
              f"{settings.credentials_dir}, token issuer in {settings.issuer_dir}")
        return 0
    if args.action == "up":
        stack.up(settings)
        return 0
    if args.action == "down":
        stack.down(settings, purge=args.purge)
        return 0
    return 0 if stack.status(settings) else 3


def _provision(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus import stack
    stack.provision_servers(settings)
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from mdmbus.cli.produce import produce
    region = _one_region(args.region) if args.region else None
    if args.principal:
        settings = dataclasses.replace(settings, kafka_principal=args.principal)
    if args.file == "-":
        return produce(settings, sys.stdin, dry_run=args.dry_run, region=region)
    try:
        source = open(args.file, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with source:
        return produce(settings, source, dry_run=args.dry_run, region=region)


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.tokens import issue_token
    region = _one_region(args.region) if args.region else None
    if args.login_link:
        from mdmbus.cli.login_link import login_link
        return login_link(settings, args.tenant, args.role, args.ttl, region)
    return issue_token(settings, args.tenant, args.role, args.ttl, region, args.write)


def _deadletters(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.deadletters import list_dead_letters, show_dead_letter
    region = _one_region(args.region)
    if args.action == "show":
        if not args.source:
            raise UsageError("show needs the dead letter's TOPIC:PARTITION:OFFSET")
        return show_dead_letter(settings, region, args.source)
    return list_dead_letters(settings, region, args.tenant, args.reason, args.limit)


def _process(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.processes import REGIONAL, run_process
    if args.name in REGIONAL and args.region is None:
        raise UsageError(f"`mdmbus process {args.name}` runs per region: give --region "
                         "na|eu|ap (or a list, or all)")
    return run_process(args.name, settings, _regions(args.region or "all"))


def _smoke(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.smoke import run_smoke
    return run_smoke(settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli.demo import run_demo
    return run_demo(settings, speed=args.speed, duration=args.duration, rate=args.rate,
                    tenants=args.tenants, start_processes=not args.no_processes,
                    metrics_base_port=args.metrics_base_port)


def _crypto(args: argparse.Namespace, settings: Settings) -> int:
    from mdmbus.cli import crypto
    regions = _regions(args.region)
    if args.action == "upgrade":
        if args.batch < 1:
            raise UsageError("--batch must be at least 1")
        return crypto.upgrade(settings, regions, args.batch, args.rewrite)
    return crypto.status(settings, regions)


def _parser() -> argparse.ArgumentParser:
    from mdmbus.cli.processes import PROCESSES
    from mdmbus.services.gateway.access import ROLES
    parser = argparse.ArgumentParser(prog="mdmbus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the embedded Kafka + PostgreSQL stack on 127.0.0.1",
                       epilog="credentials creates the CA, the servers' certificates, the "
                              "passwords and the token issuer's key without starting anything "
                              "(compose's mdmbus-certs does this). "
                              "client-config prints the connection settings of a Kafka client "
                              "(kcat -F FILE, a Java client's properties) acting as one of "
                              "mdmbus's principals: --auth scram (the default; librdkafka 2.1+ "
                              "and Java) or certificate (any librdkafka, Debian's kcat too)")
    p.add_argument("action", choices=["up", "down", "status", "credentials", "client-config"])
    p.add_argument("--purge", action="store_true",
                   help="down: also remove everything the stack made (its state directory and "
                        "PostgreSQL cluster): for throw-away stacks such as the tests'")
    p.add_argument("--principal", help="client-config: the Kafka principal, e.g. devices-eu")
    p.add_argument("--auth", choices=["scram", "certificate"], default="scram",
                   help="client-config: how the client authenticates (default scram)")
    p.add_argument("--format", choices=["librdkafka", "java"], default="librdkafka",
                   help="client-config: property names for librdkafka/kcat or the Java client")
    p.add_argument("--output", help="client-config: write to this file (mode 0600) instead "
                                    "of stdout")
    p.set_defaults(func=_stack)

    p = sub.add_parser("provision", help="create topics, databases and schemas on servers that "
                                         "already run (compose, or MDMBUS_KAFKA_BOOTSTRAP + PG "
                                         "settings)")
    p.set_defaults(func=_provision)

    p = sub.add_parser("produce", help="validate JSON lines and send them to their topics",
                       epilog="Each record goes to its tenant's region's topics (looked up in "
                              "the tenant directory) unless --region is given. "
                              "exit status: 0 every line sent (or valid, with --dry-run); 1 some "
                              "lines refused by the contract, the others sent; 2 bad arguments "
                              "or an unreadable file; 3 Kafka could not be reached (lines read "
                              "before may have been sent; the summary says how many); 4 Kafka "
                              "refused some records, named by line, the others sent")
    p.add_argument("file", nargs="?", default="-",
                   help='JSON lines, one {"kind": ..., "record": {...}} per line (default: stdin)')
    p.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    p.add_argument("--region", help="send every record to this region's topics (the tenant "
                                    "directory is not asked; a record of a tenant living "
                                    "elsewhere is refused there)")
    p.add_argument("--principal", help="the Kafka principal to send as (default: "
                                       "MDMBUS_KAFKA_PRINCIPAL, else admin); its password is "
                                       "MDMBUS_PASSWORD_KAFKA_<NAME> or the stack's file")
    p.set_defaults(func=_produce)

    p = sub.add_parser("token", help="a token for a simulated tenant, from the embedded stack's "
                                     "issuer (for the gateway: Authorization: Bearer <token>)")
    p.add_argument("--tenant", required=True, help="tenant id (uuid)")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds it is valid (default 3600)")
    p.add_argument("--write", action="store_true",
                   help="write a CM connector token file for the tenant instead of printing")
    p.add_argument("--region", help="with --write: the tenant's region (its gateway); with "
                                    "--login-link: its region (default: looked up)")
    p.add_argument("--login-link", action="store_true",
                   help="print a one-time sign-in link to the privacy center of the tenant's "
                        "gateway instead (single use, valid 10 minutes; --ttl: of the session)")
    p.set_defaults(func=_token)

    p = sub.add_parser("deadletters", help="refused records of a region (list, or show one)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("source", nargs="?", help="show: TOPIC:PARTITION:OFFSET of the dead letter")
    p.add_argument("--region", required=True)
    p.add_argument("--tenant", help="list: only this tenant's")
    p.add_argument("--reason", help="list: only this reason")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_deadletters)

    p = sub.add_parser("crypto", help="cryptographic erasure: seal the bodies stored in clear "
                                      "before (upgrade), or show keyrings and gauges (status)",
                       epilog="upgrade is resumable (run it again to go on) and prints its "
                              "progress; status exits 1 when a row is in clear or wrapped "
                              "under a KEK past its retirement")
    p.add_argument("action", choices=["upgrade", "status"])
    p.add_argument("--region", default="all", help="na, eu, ap, a list, or all (default)")
    p.add_argument("--batch", type=int, default=1000, help="upgrade: rows per transaction")
    p.add_argument("--rewrite", action="store_true",
                   help="upgrade: then rewrite the tables into new files (VACUUM FULL), so "
                        "the clear copies' pages are no longer part of the database")
    p.set_defaults(func=_crypto)

    p = sub.add_parser("process", help="run one process of mdmbus in the foreground")
    p.add_argument("name", choices=PROCESSES)
    p.add_argument("--region", help="the region(s) it serves: na, eu, ap, a comma-separated "
                                    "list, or all (required for pipeline, sweeper, gateway)")
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
                   help="/metrics of pipeline, sweeper, gateway, cm-connector on this port and "
                        "the next three")
    p.add_argument("--no-processes", action="store_true",
                   help="only simulate; the pipeline processes run elsewhere (compose)")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Whatever mdmbus and the servers it starts create (data, logs, credentials) is readable
    # by its owner only.
    os.umask(0o077)
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
    except BrokenPipeError:  # e.g. `mdmbus deadletters list ... | head`: the reader had enough
        sys.stderr.close()
        return 0
