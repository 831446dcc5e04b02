"""The `tradehub` command line.

Every command is declared once, in COMMANDS below: its name, its help, its
arguments and the function that runs it (or its own subcommands). `main`
builds the argparse parser from that table and calls the handler of the
command given. Handlers import what they run when they run, so a command
loads only its own dependencies. Settings come from the environment
(docs/configuration.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg_pool import PoolTimeout

from hub.declarations import AGENCIES, InvalidDeclaration, RoutingError, validate_document
from hub.declarations.documents import MalformedJSON, load_json
from hub.declarations.licence import ISSUERS
from hub.storage import StoreUnavailable
from messaging.embedded import BrokerUnavailable
from projections.database import RebuildRunning
from tradehub import client
from tradehub.auth import SecretError, issue_token, parse_ttl, resolve_secret, token_id
from tradehub.bootstrap import VIEW_NAMES, ConfigurationError, Settings, build_hub, keep_private, routing_rules
from tradehub.client import ClientError
from tradehub.rebuilds import parallel_fill


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
        token = issue_token(secret, args.role, party=args.party, agency=args.agency, ttl=parse_ttl(args.ttl),
                            kind=args.kind)
    except ValueError as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    print(token)  # stdout is the bare token, for scripts; its id goes to stderr
    print(f"token id {token_id(token)} (revoke it with: tradehub token revoke {token_id(token)})", file=sys.stderr)
    return 0


def revoke_token_command(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a token by its id (or the token itself): every API process refuses it within about a second."""
    from tradehub.auth import InvalidToken, Revocations

    try:
        identifier = token_id(args.id) if args.id.count(".") == 2 else str(uuid.UUID(args.id))
    except (InvalidToken, ValueError):
        print(f"tradehub: {args.id[:60]!r} is neither a token id (a UUID, as token issue prints) nor a token",
              file=sys.stderr)
        return 2
    hub = build_hub(settings)
    try:
        added = Revocations(hub.views).revoke(identifier)
    finally:
        hub.close()
    print(f"token {identifier} " + ("revoked" if added else "was already revoked"), file=sys.stderr)
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


def _processes(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1 or more)")
    return int(text)


def rebuild_projections(settings: Settings, views: Sequence[str] | None, processes: int = 1) -> int:
    """`tradehub projections rebuild`: the views built afresh from the log beside the live ones, by `processes`
    processes, then swapped in (docs/rebuilds.md), with what it took."""
    fill = parallel_fill(settings, "", processes)
    hub = build_hub(settings)
    try:
        started = time.perf_counter()
        applied = hub.runner.rebuild(views, fill=fill)
        seconds = time.perf_counter() - started
    finally:
        hub.close()
    for name, count in applied.items():
        print(f"{name:14} {count:9} events")
    print(f"rebuilt {len(applied)} view(s) in {seconds:.1f} s")
    return 0


# ---- the commands' handlers: each takes the parsed arguments and the settings, returns the exit status ----

Handler = Callable[[argparse.Namespace, Settings], int]


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    return validate(args.files, settings)


def _render(args: argparse.Namespace, settings: Settings) -> int:
    from tradehub.render import render

    return render(args.file, settings, agency=args.agency, out=args.out)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from tradehub.server import serve

    return serve(settings, host=args.host, port=args.port, demo=args.demo, workers=args.workers,
                 access_log=args.access_log, dispatching=args.dispatching, simulating=args.simulate_agencies)


def _log_to_stderr() -> None:
    """Long-running workers log what they do, with the time, to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    _log_to_stderr()
    keep_private(settings.data_dir)
    from tradehub.worker import run_consumers, run_dispatch, run_projections, run_webhooks

    if args.part == "webhooks":
        return run_webhooks(settings)
    if args.part == "dispatch":
        return run_dispatch(settings, args.agency or AGENCIES)
    if args.part == "consume":
        return run_consumers(settings, args.agency or AGENCIES)
    return run_projections(settings)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    _log_to_stderr()
    from tradehub.worker import run_simulators

    return run_simulators(settings, args.agency or AGENCIES)


def _agency_credentials(args: argparse.Namespace, settings: Settings) -> int:
    """What an agency's system needs to connect: NATS (the embedded broker's identities), or RabbitMQ."""
    from messaging.broker import inbound_subject, outbound_subject, uses_rabbitmq
    from messaging.credentials import PASSWORD_SUFFIX, CredentialsError, Identities, nats_access
    from messaging.embedded import BROKER_DIRECTORY, recorded_url

    directory = settings.data_dir / BROKER_DIRECTORY
    if uses_rabbitmq(settings.broker_url):
        from messaging.rabbit import agency_user

        password = directory / f"{args.agency}{PASSWORD_SUFFIX}"
        scheme, _, rest = settings.broker_url.partition("://")
        url = f"{scheme}://{agency_user(args.agency)}:***@{rest.rpartition('@')[2]}"
        lines = [("agency", args.agency), ("url", f"{url} (*** the password in the file below)"),
                 ("user", agency_user(args.agency)),
                 ("password file", str(password.resolve()) if password.exists()
                  else "none yet: run `tradehub agencies provision`"),
                 ("publishes to", f"exchange {inbound_subject(args.agency)}"),
                 ("reads", f"queue {outbound_subject(args.agency)}")]
    else:
        try:
            identities = Identities.load(directory)
        except CredentialsError as error:
            raise ConfigurationError(str(error)) from None
        lines = nats_access(args.agency, identities, settings.broker_url or recorded_url(directory))
    for label, value in lines:
        print(f"{label + ':':18}{value}")
    return 0


def _provision(args: argparse.Namespace, settings: Settings) -> int:
    """Each agency's own RabbitMQ user, limited to its own queues (TRADEHUB_BROKER_URL=amqp://…)."""
    from messaging.broker import uses_rabbitmq
    from messaging.credentials import CredentialsError
    from messaging.embedded import BROKER_DIRECTORY
    from messaging.provision import ProvisionError, Rabbitmqctl, describe, provision

    if not uses_rabbitmq(settings.broker_url):
        raise ConfigurationError("agencies provision needs TRADEHUB_BROKER_URL=amqp://… (a RabbitMQ); the "
                                 "embedded NATS makes its identities itself, an external one is configured "
                                 "by hand (docs/broker.md)")
    try:
        done = provision(settings.broker_url, args.agency or AGENCIES, settings.data_dir / BROKER_DIRECTORY,
                         Rabbitmqctl(args.rabbitmqctl, args.node))
    except (ProvisionError, CredentialsError) as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    for line in describe(done, settings.broker_url):
        print(line)
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    keep_private(settings.data_dir)
    return rebuild_projections(settings, args.views, args.processes)


def _keys(name: str) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from tradehub import keys

        return getattr(keys, name)(args, settings)

    return handler


def _parties_import(args: argparse.Namespace, settings: Settings) -> int:
    from tradehub.registers import import_parties

    return import_parties(args, settings)


def _licences_import(args: argparse.Namespace, settings: Settings) -> int:
    from tradehub.licences import import_licences

    return import_licences(args, settings)


def _licences_show(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.licences import show

    return show(args.number, url=args.url, token=args.token, issuer=args.issuer)


def _licences_list(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.licences import listing

    return listing(url=args.url, token=args.token, holder=args.holder, limit=args.limit)


def _openapi(_args: argparse.Namespace, _settings: Settings) -> int:
    return print_openapi()


def _asyncapi(_args: argparse.Namespace, _settings: Settings) -> int:
    from messaging.contract import document_text

    print(document_text(CONTRACT_VERSION), end="")
    return 0


def _template(args: argparse.Namespace, _settings: Settings) -> int:
    """Write a declaration spreadsheet template to stdout, never to a terminal (it is a binary .xlsx)."""
    from tradehub.spreadsheets import template

    if sys.stdout.isatty():
        print(f"tradehub: the template is an .xlsx file; redirect it: tradehub template {args.kind} > "
              f"{args.kind}.xlsx", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(template(args.kind))
    sys.stdout.buffer.flush()
    return 0


def _submit(args: argparse.Namespace, _settings: Settings) -> int:
    return client.submit(args.files, url=args.url, token=args.token, concurrency=args.concurrency)


def _status(args: argparse.Namespace, _settings: Settings) -> int:
    return client.status(args.id, url=args.url, token=args.token, declarant=args.declarant)


def _history(args: argparse.Namespace, _settings: Settings) -> int:
    return client.history(args.id, url=args.url, token=args.token, declarant=args.declarant)


def _attach(args: argparse.Namespace, _settings: Settings) -> int:
    return client.attach(args.id, args.file, url=args.url, token=args.token, declarant=args.declarant)


def _dead_letters_list(args: argparse.Namespace, _settings: Settings) -> int:
    return client.dead_letters(url=args.url, token=args.token, agency=args.agency, code=args.code, state=args.state,
                               limit=args.limit)


def _dead_letters_show(args: argparse.Namespace, _settings: Settings) -> int:
    return client.dead_letter(args.id, url=args.url, token=args.token)


def _dead_letters_replay(args: argparse.Namespace, _settings: Settings) -> int:
    return client.replay_dead_letter(args.id, url=args.url, token=args.token)


def _dispatch_parked(args: argparse.Namespace, _settings: Settings) -> int:
    return client.parked_dispatch(url=args.url, token=args.token, agency=args.agency)


def _dispatch_retry(args: argparse.Namespace, _settings: Settings) -> int:
    return client.retry_dispatch(args.id, args.agency, url=args.url, token=args.token)


# ---- personal data (docs/personal-data.md): erasure and the access log, through the admin API ----

ERASURE_REASON_LENGTH = 500  # as the route takes it


def _personal_data_erase(args: argparse.Namespace, _settings: Settings) -> int:
    """Erase the people a declaration names; erasing it again says so and changes nothing (exit 0 both)."""
    reason = args.reason.strip()
    if not reason or len(reason) > ERASURE_REASON_LENGTH:
        raise ClientError(f"--reason must be 1 to {ERASURE_REASON_LENGTH} characters of text, got {len(reason)}")
    with client._client(args.url, args.token) as http:
        declaration_id = client.declaration_id_of(http, args.declaration, args.declarant)
        done = _admin_call(http, "post", f"/v1/declarations/{declaration_id}/personal-data/erasure",
                           json={"reason": reason})
    when = f"by {done['erased_by']} at {done['erased_at']} ({done['reason']})"
    if not done["erased"]:
        print(f"declaration {done['declaration_id']}: its personal data was already erased, {when}; nothing changed")
        return 0
    print(f"declaration {done['declaration_id']}: the crew and passengers it named are erased, {when}")
    print(f"{done['messages']} recorded message(s) named them: the agencies have theirs; the hub can no longer show "
          "or resend them")
    return 0


def _personal_data_reads(args: argparse.Namespace, _settings: Settings) -> int:
    """Print who was shown personal data, oldest first, up to --limit, following the pages."""
    rows = [("TIME", "READER", "TOKEN", "DECLARATION", "FIELDS", "MESSAGES", "ROUTE")]
    with client._client(args.url, args.token) as http:
        params = {"reader": args.reader} if args.reader else {}
        if args.declaration:
            params["declaration"] = client.declaration_id_of(http, args.declaration, args.declarant)
        while len(rows) - 1 < args.limit:
            page = _admin_call(http, "get", "/v1/personal-data/reads",
                               params={**params, "limit": str(min(500, args.limit - (len(rows) - 1)))})
            rows += [(read["time"], read["reader"], read["token_id"] or "-", read["declaration_id"],
                      ",".join(read["fields"]), ",".join(read["messages"]) or "-", read["route"])
                     for read in page["items"]]
            if not page["next"]:
                break
            params["after"] = page["next"]
    if len(rows) == 1:
        print("no reads of personal data recorded" + (" for that" if args.declaration or args.reader else ""))
        return 0
    client._table(rows)
    return 0


def _personal_data_retention(args: argparse.Namespace, settings: Settings) -> int:
    """Erase what the retention policy (TRADEHUB_PERSONAL_DATA_DAYS) has made due: once, or --every SECONDS."""
    if args.every and args.dry_run:
        raise ConfigurationError("--dry-run lists what one run would erase: leave out --every")
    keep_private(settings.data_dir)
    if args.every:
        _log_to_stderr()
        from tradehub.worker import run_retention

        return run_retention(settings, every=args.every)
    from tradehub.retention import run_once

    return run_once(settings, dry_run=args.dry_run)


def _seconds(text: str) -> float:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (1 or more)")
    return float(text)


def _admin_call(http: Any, method: str, path: str, **options: Any) -> Any:
    """An admin route's 200 answer; ClientError with the refusal on one line (status, title, what is at fault)."""
    import httpx

    try:
        response = http.request(method.upper(), path, **options)
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach {http.base_url}: {error}") from None
    if response.status_code == 200:
        return response.json()
    try:
        problem = response.json()
    except ValueError:
        raise ClientError(f"HTTP {response.status_code}") from None
    said = [problem.get("detail") or ""] + [f"{error['path']}: {error['message']}" for error in problem.get("errors")
                                           or ()]
    raise ClientError(f"{response.status_code} {problem.get('title', '')}: " + "; ".join(part for part in said if part))


def _bench_ingest(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.ingest import run_ingest

    return run_ingest(args)


def _bench_messages(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.messages import run_messages

    return run_messages(args)


def _bench_http(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.http import run_http

    return run_http(args)


def _bench_e2e(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.e2e import run_e2e

    return run_e2e(args)


def _bench_spreadsheet(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.spreadsheet import run_spreadsheet

    return run_spreadsheet(args)


def _bench_rebuild(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.rebuild import run_rebuild

    return run_rebuild(args)


def _bench_erasure(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.erasure import run_erasure

    return run_erasure(args)


def _bench_long_stream(args: argparse.Namespace, _settings: Settings) -> int:
    from tradehub.bench.long_stream import run_long_stream

    return run_long_stream(args)


# ---- the table of commands ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FromEnvironment:
    """A default read from the environment variable `name` (else `fallback`) when the parser is built."""

    name: str
    fallback: str

    def value(self) -> str:
        return os.environ.get(self.name, self.fallback)


@dataclass(frozen=True)
class Argument:
    """One argument of a command: argparse's name or flags, and its `add_argument` keywords."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        options = dict(self.options)
        if isinstance(options.get("default"), FromEnvironment):
            options["default"] = options["default"].value()  # its help names the variable, never the value
        elif states_default(options) and "default" not in options["help"]:
            options["help"] += f" (default {options['default']})"
        parser.add_argument(*self.flags, **options)


def states_default(options: dict[str, Any]) -> bool:
    """Whether an option's help must say its default: it has one that is more than absent or off."""
    flag = options.get("action") in ("store_true", "store_false")
    return not flag and options.get("default") not in (None, argparse.SUPPRESS) and "help" in options


def arg(*flags: str, **options: Any) -> Argument:
    """An `Argument`, written as the `add_argument` call it stands for."""
    return Argument(flags, options)


@dataclass(frozen=True)
class Command:
    """A command: its name, its help, its arguments, and either the handler that runs it or its subcommands."""

    name: str
    help: str
    arguments: tuple[Argument, ...] = ()
    handler: Handler | None = None
    subcommands: Subcommands | None = None


@dataclass(frozen=True)
class Subcommands:
    """A command's choice of subcommand: where the choice is stored (`dest`), how usage names it, the choices."""

    dest: str
    metavar: str | None
    commands: tuple[Command, ...]


CLIENT_ARGUMENTS = (
    arg("--url", default=FromEnvironment("TRADEHUB_URL", "http://127.0.0.1:8000"),
        help="the hub (default TRADEHUB_URL or http://127.0.0.1:8000)"),
    arg("--token", default=FromEnvironment("TRADEHUB_TOKEN", ""), help="bearer token (default TRADEHUB_TOKEN)"),
)
# A declaration named the way its declarant knows it: the id, or the reference (unique per declarant).
DECLARATION_ARGUMENTS = (
    arg("id", metavar="ID|REFERENCE",
        help="the declaration's id (a UUID), or the reference its declarant gave it"),
    arg("--declarant", metavar="USCC",
        help="whose reference it is, where several declarants use it (default: the only declaration the token "
             "sees with that reference; a trader's token sees only its own)"),
)
DECLARANT = DECLARATION_ARGUMENTS[1]
DEAD_LETTER = arg("id", metavar="ID", help="the dead letter's id, as `dead-letters list` prints it")
BENCH_DATABASE = arg("--database-url", default="", help="PostgreSQL server (as for ingest)")

BENCH = Subcommands("suite", "SUITE", (
    Command("ingest", "declarations stored per second, SQLite and PostgreSQL", (
        arg("--count", type=int, default=5000, help="declarations per measurement"),
        arg("--clients", type=int, default=32, help="concurrent submitting threads"),
        arg("--rounds", type=int, default=5, help="alternating measurement rounds"),
        arg("--database-url", default="", help="PostgreSQL to measure (default: TRADEHUB_BENCH_DATABASE_URL, "
                                               "TRADEHUB_DATABASE_URL, else an embedded PostgreSQL if installed)"),
        arg("--only", choices=("sqlite", "postgres"), help="measure one store"),
    ), _bench_ingest),
    Command("messages", "agency messages built per second, against raw lxml", (
        arg("--count", type=int, default=2000, help="goods declarations per round"),
        arg("--rounds", type=int, default=5, help="alternating measurement rounds"),
    ), _bench_messages),
    Command("http", "declarations accepted per second by tradehub serve", (
        arg("--count", type=int, default=6000, help="declarations at peak, over all rounds"),
        arg("--rounds", type=int, default=3, help="alternating measurement rounds"),
        arg("--clients", type=int, default=32, help="concurrent connections at peak"),
        arg("--workers", type=_processes, default=os.cpu_count() or 1,
            help="API worker processes (default: one per core)"),
        arg("--store", choices=("postgres", "sqlite"), default="postgres", help="the store to serve from"),
        BENCH_DATABASE,
    ), _bench_http),
    Command("e2e", "declarations from submit to released over PostgreSQL and JetStream", (
        arg("--duration", type=int, default=60, help="seconds of offered load for the throughput figure"),
        arg("--offered", type=int, default=250, help="declarations offered per second meanwhile"),
        arg("--latency-seconds", type=int, default=20, help="seconds at 100/s for the latency figure"),
        arg("--cluster", action="store_true",
            help="scaled out: a 3-node NATS cluster (streams at R3), two submitting and two dispatch processes; "
                 "throughput measured twice, the second time with a node SIGKILLed and restarted midway"),
        BENCH_DATABASE,
    ), _bench_e2e),
    Command("rebuild", "the read models rebuilt from 100,000+ events by 1 and N processes, against a raw read of "
            "the event table and eventsourcing's read + decode", (
        arg("--declarations", type=int, default=16000, help="goods declarations in the log (about 8 events each)"),
        arg("--processes", type=_processes, default=2, help="processes of the parallel rebuild (default 2)"),
        BENCH_DATABASE,
    ), _bench_rebuild),
    Command("spreadsheet", "a ferry's passenger list converted from .xlsx to its declaration, against a raw "
                           "calamine read", (
        arg("--passengers", type=int, default=5000, help="passengers on the list (default 5000)"),
        arg("--rounds", type=int, default=5, help="measurement rounds; the median is reported (default 5)"),
    ), _bench_spreadsheet),
    Command("erasure", "vessel calls' people erased one by one, and the views rebuilt before and after", (
        arg("--count", type=int, default=2000, help="vessel calls per store (default 2000)"),
        arg("--database-url", default="", help="PostgreSQL to measure (default: TRADEHUB_BENCH_DATABASE_URL, "
                                               "TRADEHUB_DATABASE_URL, else an embedded PostgreSQL if installed)"),
        arg("--only", choices=("sqlite", "postgres"), help="measure one store"),
    ), _bench_erasure),
    Command("long-stream", "a declaration amended 200 times with a 4 MiB document: replay, the next answer, the "
                           "API and the page, against a fresh declaration of the same document", (
        arg("--amendments", type=int, default=200, help="amendments of the long stream"),
        arg("--rounds", type=int, default=3, help="measurement rounds; the median is reported"),
        arg("--snapshot-interval", type=int, help="snapshot every this many versions (0: none; default: the hub's)"),
        arg("--only", choices=("sqlite", "postgres"), help="measure one store"),
        BENCH_DATABASE,
    ), _bench_long_stream),
))

COMMANDS = Subcommands("command", "COMMAND", (
    Command("validate", "check declaration files offline", (
        arg("files", nargs="+", type=Path, metavar="FILE", help="declaration JSON files to check"),
    ), _validate),
    Command("render", "print the XML each routed agency would get, unsigned, storing nothing", (
        arg("file", type=Path, metavar="FILE", help="a declaration JSON file"),
        arg("--agency", choices=AGENCIES, help="only this agency's messages (default: every routed agency's)"),
        arg("--out", type=Path, metavar="DIR", help="write one file per message here"),
    ), _render),
    Command("serve", "run the HTTP API and its projections", (
        arg("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
        arg("--port", type=int, default=8000, help="TCP port to listen on; refused if already in use"),
        arg("--workers", type=_processes, default=1,
            help="API worker processes (on PostgreSQL, one per core serves the most)"),
        arg("--no-dispatch", dest="dispatching", action="store_false",
            help="do not dispatch agency messages or consume their answers here "
                 "(run tradehub worker dispatch and worker consume elsewhere)"),
        arg("--simulate-agencies", action="store_true",
            help="also run the simulated agencies, so declarations go all the way to released"),
        arg("--demo", action="store_true",
            help="local demo: without TRADEHUB_SECRET, generate one in the data directory"),
        arg("--access-log", action="store_true", help="log every HTTP request to stderr (default: off)"),
    ), _serve),
    Command("token", "bearer tokens", subcommands=Subcommands("token_command", "ACTION", (
        Command("issue", "print a token signed with the hub's secret", (
            arg("--role", required=True, choices=("trader", "officer", "admin"),
                help="trader (needs --party), officer (needs --agency) or admin"),
            arg("--party", help="the trader's USCC"),
            arg("--agency", help=f"the officer's agency: {', '.join(AGENCIES)}"),
            arg("--ttl", default="8h", help="lifetime: 90s, 30m, 8h or 7d (default 8h); at most 12h for a "
                                            "person's token, 30d for a machine's"),
            arg("--kind", choices=("person", "machine"), default="person",
                help="who holds it: a person (default) or a trader's or agency's system; admin tokens are people's"),
        ), issue_token_command),
        Command("revoke", "revoke a token: every API process and page refuses it within about a second", (
            arg("id", metavar="ID", help="the token's id, as `token issue` prints it (or the token itself)"),
        ), revoke_token_command),
    ))),
    Command("template", "write a declaration spreadsheet (.xlsx) to fill and submit: tradehub template goods > "
                        "goods.xlsx", (
        arg("kind", choices=("goods", "vessel_call"), metavar="KIND", help="goods or vessel_call"),
    ), _template),
    Command("submit", "submit declaration files through the API", (
        *CLIENT_ARGUMENTS,
        arg("files", nargs="+", type=Path, metavar="FILE",
            help="declaration files, one declaration each: JSON, or .xlsx as `tradehub template` writes"),
        arg("--concurrency", type=int, default=8, help="files sent at the same time"),
    ), _submit),
    Command("status", "a declaration's status at every agency, by its id or the trader's reference",
            (*CLIENT_ARGUMENTS, *DECLARATION_ARGUMENTS), _status),
    Command("history", "a declaration's events, by its id or the trader's reference",
            (*CLIENT_ARGUMENTS, *DECLARATION_ARGUMENTS), _history),
    Command("attach", "attach a supporting document (PDF, JPEG, PNG or XML, at most 10 MB) to a declaration", (
        *CLIENT_ARGUMENTS, *DECLARATION_ARGUMENTS,
        arg("file", metavar="FILE", type=Path, help="the document to attach")), _attach),
    Command("dead-letters", "answers the hub refused (admins)", subcommands=Subcommands(
        "dead_letters_command", "ACTION", (
            Command("list", "dead letters, newest first", (
                *CLIENT_ARGUMENTS,
                arg("--agency", choices=AGENCIES, help="only this agency's (default: every agency's)"),
                arg("--code", help="only this dead-letter code (docs/dead-letters.md)"),
                arg("--state", choices=("none", "requested", "running", "applied", "unchanged", "dead", "failed"),
                    help="only letters in this replay state"),
                arg("--limit", type=_processes, default=50, help="at most this many (default 50)"),
            ), _dead_letters_list),
            Command("show", "one dead letter, with its body", (*CLIENT_ARGUMENTS, DEAD_LETTER), _dead_letters_show),
            Command("replay", "send a dead letter through the inbox again, once its cause is fixed",
                    (*CLIENT_ARGUMENTS, DEAD_LETTER), _dead_letters_replay),
        ))),
    Command("dispatch", "declarations whose messages to an agency could not be sent (admins)",
            subcommands=Subcommands("dispatch_command", "ACTION", (
                Command("parked", "parked dispatches, oldest failure first, with why",
                        (*CLIENT_ARGUMENTS, arg("--agency", choices=AGENCIES,
                                                help="only this agency's (default: every agency's)")),
                        _dispatch_parked),
                Command("retry", "try a parked dispatch again now rather than at its back-off's time", (
                    *CLIENT_ARGUMENTS, arg("id", metavar="ID", help="the declaration's id"),
                    arg("agency", choices=AGENCIES, metavar="AGENCY", help=f"one of {', '.join(AGENCIES)}"),
                ), _dispatch_retry),
            ))),
    Command("worker", "run one part of the hub as its own process", (
        arg("part", choices=("project", "dispatch", "consume", "webhooks"),
            help="project: follow the log into the views; dispatch: send agencies their messages; "
                 "consume: apply the agencies' answers; webhooks: send traders' webhooks"),
        arg("--agency", choices=AGENCIES, action="append",
            help="dispatch or consume only this agency's messages (repeatable; default all)"),
    ), _worker),
    Command("agencies", "the agencies: simulated ones, and their broker credentials", subcommands=Subcommands("agencies_command", None, (
        Command("simulate", "answer the hub's messages over the broker (TRADEHUB_BROKER_URL) as the agencies would", (
            arg("--agency", choices=AGENCIES, action="append",
                help="simulate only this agency (repeatable; default all)"),
        ), _simulate),
        Command("credentials", "print what an agency's system needs to connect to the broker", (
            arg("agency", choices=AGENCIES, metavar="AGENCY", help=f"one of {', '.join(AGENCIES)}"),
        ), _agency_credentials),
        Command("provision", "give each agency its own RabbitMQ user, limited to its own queues "
                             "(TRADEHUB_BROKER_URL=amqp://…)", (
            arg("--agency", choices=AGENCIES, action="append",
                help="provision only this agency (repeatable; default all)"),
            arg("--rabbitmqctl", default="rabbitmqctl", help="the rabbitmqctl to run (default: from PATH)"),
            arg("--node", help="the RabbitMQ node, as rabbitmqctl --node takes it (default: rabbitmqctl's)"),
        ), _provision),
    ))),
    Command("projections", "the read models", subcommands=Subcommands("projections_command", "ACTION", (
        Command("rebuild", "build the read models afresh from the whole event log beside the live ones, which keep serving, then swap them in", (
            arg("--view", action="append", choices=VIEW_NAMES, dest="views",
                help="rebuild only this view (repeatable; default all)"),
            arg("--processes", type=_processes, default=1,
                help="build with this many processes at once (PostgreSQL only; default 1)"),
        ), _rebuild),
    ))),
    Command("keys", "the hub's signing certificate and the agencies' registered certificates",
            subcommands=Subcommands("keys_command", "ACTION", (
                Command("register", "register a certificate for an agency or licence issuer, beside its current "
                        "ones (rotation)", (
                    arg("agency", choices=ISSUERS, metavar="ISSUER",
                        help="an agency, or another licence issuer (commerce, cnca)"),
                    arg("certificate", type=Path, metavar="CERT.pem", help="the certificate, PEM-encoded"),
                ), _keys("register")),
                Command("list", "the certificates of an agency, or of all: current, expired, retired", (
                    arg("agency", nargs="?", choices=ISSUERS, metavar="ISSUER",
                        help=f"one of {', '.join(ISSUERS)} (default: every issuer)"),
                ), _keys("listing")),
                Command("retire", "refuse an agency's certificate from now on (running consumers included)", (
                    arg("agency", choices=ISSUERS, metavar="ISSUER", help=f"one of {', '.join(ISSUERS)}"),
                    arg("fingerprint", metavar="FINGERPRINT", help="its SHA-256, or 8+ leading hex digits"),
                ), _keys("retire")),
                Command("hub-certificate", "print the hub's certificate (PEM), for agencies to verify its messages",
                        handler=_keys("certificate")),
                Command("issuer-certificate", "print the certificate (PEM) of the key the hub signs an issuer's "
                        "licences with, for third parties to verify them", (
                    arg("issuer", choices=ISSUERS, metavar="ISSUER", help=f"one of {', '.join(ISSUERS)}"),
                ), _keys("issuer_certificate")),
            ))),
    Command("parties", "the business register (USCC, name, address, status)",
            subcommands=Subcommands("parties_command", "ACTION", (
                Command("import", "load or update register entries from a CSV or JSON file; rows that fail are "
                                  "reported and stored nothing, the others are stored", (
                    arg("file", type=Path, metavar="FILE", help="CSV with the header uscc,name,address,status, "
                                                               "or a JSON array of such objects"),
                ), _parties_import),
            ))),
    Command("personal-data", "the people on board: erase a declaration's, list who read them, apply the retention "
                             "policy (admins)",
            subcommands=Subcommands("personal_data_command", "ACTION", (
                Command("erase", "delete the data key of a declaration's people: every route, page, message record "
                                 "and rebuild shows them erased from then on; running it again changes nothing", (
                    *CLIENT_ARGUMENTS,
                    arg("declaration", metavar="DECLARATION",
                        help="the declaration's id (a UUID), or the reference its declarant gave it"),
                    arg("--reason", required=True, help="why (kept with who erased them and when): 1 to "
                                                        f"{ERASURE_REASON_LENGTH} characters"),
                    DECLARANT,
                ), _personal_data_erase),
                Command("reads", "who was shown personal data: which declaration, which of it, where and when, "
                                 "oldest first", (
                    *CLIENT_ARGUMENTS,
                    arg("--declaration", metavar="DECLARATION",
                        help="only the reads of this declaration (its id, or its declarant's reference)"),
                    arg("--reader", metavar="SUBJECT", help="only this reader's, e.g. officer:border"),
                    DECLARANT,
                    arg("--limit", type=_processes, default=200, help="at most this many (default 200)"),
                ), _personal_data_reads),
                Command("retention", "erase the people of every declaration whose purpose was served "
                                     "TRADEHUB_PERSONAL_DATA_DAYS ago (a call's departure, a release, a rejection, a "
                                     "withdrawal); safe to run again, and beside serve's own hourly run", (
                    arg("--dry-run", action="store_true", help="list what is due, erase nothing"),
                    arg("--every", type=_seconds, metavar="SECONDS",
                        help="keep running, once every SECONDS, until stopped (as serve runs it)"),
                ), _personal_data_retention),
            ))),
    Command("licences", "e-licences and certificates: load them into the store, read them through the API",
            subcommands=Subcommands("licences_command", "ACTION", (
                Command("import", "issue licences from a CSV or JSON file into the store; rows that fail are "
                                  "reported and stored nothing, the others are stored", (
                    arg("file", type=Path, metavar="FILE",
                        help="CSV with the header number,type,issuer,holder,hs_scope,quantity,unit,valid_from,"
                             "valid_to[,signature] (hs_scope: prefixes separated by spaces or semicolons; "
                             "signature: the issuer's own JWS, else the hub signs), or a JSON array of such objects"),
                ), _licences_import),
                Command("show", "one licence: status, remaining quantity, signature and ledger", (
                    *CLIENT_ARGUMENTS, arg("number", metavar="NUMBER", help="the licence's number"),
                    arg("--issuer", choices=ISSUERS, help="where several issuers use the number"),
                ), _licences_show),
                Command("list", "the licences the token may see", (
                    *CLIENT_ARGUMENTS, arg("--holder", help="only this holder's (a USCC)"),
                    arg("--limit", type=_processes, default=200, help="at most this many (default 200)"),
                ), _licences_list),
            ))),
    Command("openapi", "print the HTTP API's OpenAPI document", handler=_openapi),
    Command("asyncapi", "print the broker contract's AsyncAPI document", handler=_asyncapi),
    Command("bench", "measure the hub against raw baselines", subcommands=BENCH),
))


def _parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, built from COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="tradehub", description="Single-window hub for trade and port declarations."
    )
    _add_subcommands(parser, COMMANDS)
    return parser


def _add_subcommands(parser: argparse.ArgumentParser, subcommands: Subcommands) -> None:
    """Add each command of the table to `parser`, with its handler as the `handler` default of its parser."""
    choices = parser.add_subparsers(dest=subcommands.dest, required=True, metavar=subcommands.metavar)
    for command in subcommands.commands:
        command_parser = choices.add_parser(command.name, help=command.help, description=command.help)
        for argument in command.arguments:
            argument.add_to(command_parser)
        if command.subcommands is not None:
            _add_subcommands(command_parser, command.subcommands)
        else:
            command_parser.set_defaults(handler=command.handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names; what the hub refuses or cannot reach is one line on stderr, exit 2."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.handler(args, settings)
    except (ConfigurationError, RoutingError, SecretError, ClientError, BrokerUnavailable, RebuildRunning) as error:
        print(f"tradehub: {error}", file=sys.stderr)
        return 2
    except (PersistenceError, StoreUnavailable, psycopg.Error, PoolTimeout, sqlite3.Error) as error:
        print(f"tradehub: the store is unavailable: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
