"""The `tradehub` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg_pool import PoolTimeout

from hub.declarations import AGENCIES, InvalidDeclaration, RoutingError, validate_document
from hub.declarations.documents import MalformedJSON, load_json
from messaging.embedded import BrokerUnavailable
from tradehub.auth import SecretError, issue_token, resolve_secret
from tradehub.bootstrap import VIEW_NAMES, ConfigurationError, Settings, build_hub, routing_rules
from tradehub.client import ClientError


def validate(files: Sequence[Path], settings: Settings) -> int:
    """Check declaration files offline: one line per error, exit 1 if any is invalid."""
    rules = routing_rules(settings)
    invalid = 0
    for path in files:
        problems = _problems(path)
        if isinstance(problems, dict):
            agencies = ", ".join(rules.route(problems)) or "no agency"
            print(f"{path}: valid {problems['kind']} {problems['reference']}, routed to {agencies}")
            continue
        invalid += 1
        for problem in problems:
            print(f"{path}: {problem}")
    if invalid:
        print(f"{invalid} of {len(files)} file(s) invalid", file=sys.stderr)
    return 1 if invalid else 0


def _problems(path: Path) -> dict | list[str]:
    """The canonical document, or the reasons it is not one."""
    try:
        raw = load_json(path.read_bytes())
        return validate_document(raw)
    except OSError as error:
        return [f"cannot read: {error.strerror}"]
    except MalformedJSON as error:
        return [f"not JSON: {error}"]
    except InvalidDeclaration as error:
        return [str(field_error) for field_error in error.errors]


def issue_token_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print a token for the configured secret (or the local demo's)."""
    secret = resolve_secret(settings.secret, settings.data_dir,
                            demo=(settings.data_dir / "secret").exists())
    try:
        token = issue_token(secret, args.role, party=args.party, agency=args.agency, ttl=_duration(args.ttl))
    except ValueError as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


CONTRACT_VERSION = "1"  # the broker contract's version, as the HTTP API's


def print_openapi() -> int:
    """The API document, from an app wired to a throw-away store (nothing is kept)."""
    import json
    import tempfile

    from tradehub.api.app import create_app

    with tempfile.TemporaryDirectory() as directory:
        hub = build_hub(Settings(data_dir=Path(directory), secret="x" * 32))
        try:
            print(json.dumps(create_app(hub).openapi(), indent=2, sort_keys=True))
        finally:
            hub.close()
    return 0


def _duration(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise ValueError(f"--ttl must look like 90s, 30m, 8h or 7d, got {text!r}")
    return timedelta(**{units[unit]: int(number)})


def _processes(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return int(text)


def rebuild_projections(settings: Settings, views: Sequence[str] | None) -> int:
    """`tradehub projections rebuild`: each view emptied and rebuilt from the log, with what it took."""
    hub = build_hub(settings)
    try:
        started = time.perf_counter()
        applied = hub.runner.rebuild(views)
        seconds = time.perf_counter() - started
    finally:
        hub.close()
    for name, count in applied.items():
        print(f"{name:14} {count:9} events")
    print(f"rebuilt {len(applied)} view(s) in {seconds:.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradehub", description="Single-window hub for trade and port declarations."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check declaration files offline")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")

    show = commands.add_parser("render", help="print the XML each routed agency would get, storing nothing")
    show.add_argument("file", type=Path, metavar="FILE")
    show.add_argument("--agency", choices=AGENCIES, help="only this agency's messages")
    show.add_argument("--out", type=Path, metavar="DIR", help="write one file per message here")

    serve = commands.add_parser("serve", help="run the HTTP API and its projections")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_processes, default=1,
                       help="API worker processes (on PostgreSQL, one per core serves the most)")
    serve.add_argument("--no-dispatch", dest="dispatching", action="store_false",
                       help="do not dispatch agency messages or consume their answers here "
                            "(run tradehub worker dispatch and worker consume elsewhere)")
    serve.add_argument("--simulate-agencies", action="store_true",
                       help="also run the simulated agencies, so declarations go all the way to released")
    serve.add_argument("--demo", action="store_true",
                       help="local demo: without TRADEHUB_SECRET, generate one in the data directory")
    serve.add_argument("--access-log", action="store_true")

    token = commands.add_parser("token", help="bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = token_commands.add_parser("issue", help="print a token signed with the hub's secret")
    issue.add_argument("--role", required=True, choices=("trader", "officer", "admin"))
    issue.add_argument("--party", help="the trader's USCC")
    issue.add_argument("--agency", help="the officer's agency")
    issue.add_argument("--ttl", default="8h", help="lifetime: 90s, 30m, 8h or 7d (default 8h)")

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", default=os.environ.get("TRADEHUB_URL", "http://127.0.0.1:8000"),
                        help="the hub (default TRADEHUB_URL or http://127.0.0.1:8000)")
    client.add_argument("--token", default=os.environ.get("TRADEHUB_TOKEN", ""),
                        help="bearer token (default TRADEHUB_TOKEN)")
    send = commands.add_parser("submit", parents=[client], help="submit declaration files through the API")
    send.add_argument("files", nargs="+", type=Path, metavar="FILE")
    send.add_argument("--concurrency", type=int, default=8)
    for name, text in (("status", "a declaration's status at every agency"),
                       ("history", "a declaration's events")):
        command = commands.add_parser(name, parents=[client], help=text)
        command.add_argument("id", metavar="ID")

    worker = commands.add_parser("worker", help="run one part of the hub as its own process")
    worker.add_argument("part", choices=("project", "dispatch", "consume"),
                        help="project: follow the log into the views; dispatch: send agencies their messages; "
                             "consume: apply the agencies' answers")
    worker.add_argument("--agency", choices=AGENCIES, action="append",
                        help="dispatch or consume only this agency's messages (repeatable; default all)")

    agencies = commands.add_parser("agencies", help="the simulated agencies")
    agencies_commands = agencies.add_subparsers(dest="agencies_command", required=True)
    simulate = agencies_commands.add_parser(
        "simulate", help="answer the hub's messages over the broker (TRADEHUB_BROKER_URL) as the agencies would")
    simulate.add_argument("--agency", choices=AGENCIES, action="append",
                          help="simulate only this agency (repeatable; default all)")

    projections = commands.add_parser("projections", help="the read models")
    projections_commands = projections.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    rebuild = projections_commands.add_parser(
        "rebuild", help="empty the read models and apply the whole event log to them again")
    rebuild.add_argument("--view", action="append", choices=VIEW_NAMES, dest="views",
                         help="rebuild only this view (repeatable; default all)")

    commands.add_parser("openapi", help="print the HTTP API's OpenAPI document")
    commands.add_parser("asyncapi", help="print the broker contract's AsyncAPI document")

    bench = commands.add_parser("bench", help="measure the hub against raw baselines")
    suites = bench.add_subparsers(dest="suite", required=True, metavar="SUITE")
    ingest = suites.add_parser("ingest", help="declarations stored per second, SQLite and PostgreSQL")
    ingest.add_argument("--count", type=int, default=5000, help="declarations per measurement")
    ingest.add_argument("--clients", type=int, default=32, help="concurrent submitting threads")
    ingest.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    ingest.add_argument("--database-url", default="",
                        help="PostgreSQL to measure (default: TRADEHUB_BENCH_DATABASE_URL, "
                             "TRADEHUB_DATABASE_URL, else an embedded PostgreSQL if installed)")
    ingest.add_argument("--only", choices=("sqlite", "postgres"), help="measure one store")
    xml = suites.add_parser("messages", help="agency messages built per second, against raw lxml")
    xml.add_argument("--count", type=int, default=2000, help="goods declarations per round")
    xml.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    http = suites.add_parser("http", help="declarations accepted per second by tradehub serve")
    http.add_argument("--count", type=int, default=6000, help="declarations at peak, over all rounds")
    http.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    http.add_argument("--clients", type=int, default=32, help="concurrent connections at peak")
    http.add_argument("--workers", type=_processes, default=os.cpu_count() or 1,
                      help="API worker processes (default: one per core)")
    e2e = suites.add_parser("e2e", help="declarations from submit to released over PostgreSQL and JetStream")
    e2e.add_argument("--duration", type=int, default=60, help="seconds of offered load for the throughput figure")
    e2e.add_argument("--offered", type=int, default=250, help="declarations offered per second meanwhile")
    e2e.add_argument("--latency-seconds", type=int, default=20, help="seconds at 100/s for the latency figure")
    e2e.add_argument("--database-url", default="", help="PostgreSQL server (as for ingest)")
    rebuild_bench = suites.add_parser("rebuild", help="the read models rebuilt from 100,000+ events, against a "
                                                     "raw read of the event table")
    rebuild_bench.add_argument("--declarations", type=int, default=16000,
                               help="goods declarations in the log (about 8 events each)")
    rebuild_bench.add_argument("--database-url", default="", help="PostgreSQL server (as for ingest)")
    http.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    http.add_argument("--database-url", default="", help="PostgreSQL server (as for ingest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "validate":
            return validate(args.files, settings)
        if args.command == "render":
            from tradehub.render import render

            return render(args.file, settings, agency=args.agency, out=args.out)
        if args.command == "serve":
            from tradehub.server import serve

            return serve(settings, host=args.host, port=args.port, demo=args.demo, workers=args.workers,
                         access_log=args.access_log, dispatching=args.dispatching,
                         simulating=args.simulate_agencies)
        if args.command in ("worker", "agencies"):
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        if args.command == "worker":
            from tradehub.worker import run_consumers, run_dispatch, run_projections

            if args.part == "dispatch":
                return run_dispatch(settings, args.agency or AGENCIES)
            if args.part == "consume":
                return run_consumers(settings, args.agency or AGENCIES)
            return run_projections(settings)
        if args.command == "agencies":
            from tradehub.worker import run_simulators

            return run_simulators(settings, args.agency or AGENCIES)
        if args.command == "projections":
            return rebuild_projections(settings, args.views)
        if args.command == "openapi":
            return print_openapi()
        if args.command == "asyncapi":
            from messaging.contract import document_text

            print(document_text(CONTRACT_VERSION), end="")
            return 0
        if args.command == "token":
            return issue_token_command(args, settings)
        if args.command in ("submit", "status", "history"):
            from hub import client

            if args.command == "submit":
                return client.submit(args.files, url=args.url, token=args.token, concurrency=args.concurrency)
            return getattr(client, args.command)(args.id, url=args.url, token=args.token)
        if args.command == "bench":
            if args.suite == "http":
                from tradehub.bench.http import run_http

                return run_http(args)
            if args.suite == "e2e":
                from tradehub.bench.e2e import run_e2e

                return run_e2e(args)
            if args.suite == "rebuild":
                from tradehub.bench.rebuild import run_rebuild

                return run_rebuild(args)
            if args.suite == "messages":
                from tradehub.bench.messages import run_messages

                return run_messages(args)
            from tradehub.bench.ingest import run_ingest

            return run_ingest(args)
    except (ConfigurationError, RoutingError, SecretError, ClientError, BrokerUnavailable) as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    except (PersistenceError, psycopg.Error, PoolTimeout, sqlite3.Error) as error:
        print(f"tradehub: the store is unavailable: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
