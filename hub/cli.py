"""The `tradehub` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hub.bootstrap import ConfigurationError, Settings, routing_rules
from hub.declarations import InvalidDeclaration, RoutingError, validate_document
from hub.declarations.documents import MalformedJSON, load_json


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradehub", description="Single-window hub for trade and port declarations."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("validate", help="check declaration files offline")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "validate":
            return validate(args.files, settings)
        if args.command == "bench":
            from hub.bench import run_ingest

            return run_ingest(args)
    except (ConfigurationError, RoutingError) as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
