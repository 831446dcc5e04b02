"""`tradehub agencies provision`: each agency's own RabbitMQ user, allowed its own queues and nothing more.

For TRADEHUB_BROKER_URL=amqp://… (the hub's user, which may declare the
topology). Each agency gets the user `tradehub-<agency>`:

- configure: nothing (`^$`): it declares no queue or exchange, only looks
  its own up (a passive declare needs no right);
- write: its own answers exchange, `tradehub.in.<agency>` (messaging.rabbit),
  which routes to its own inbound queue only;
- read: its own outbound queue, `tradehub.out.<agency>`.

Users are made with `rabbitmqctl`, which every RabbitMQ node has (the
management plugin is often off), run where it reaches the node (the same
host, or `--node` and the Erlang cookie). Passwords are generated once into
`<data dir>/broker/<agency>.password` (mode 0600) and given to rabbitmqctl on
its standard input, never on a command line another user could read. Running
it again changes nothing but restores what drifted: the user's password from
its file, its permissions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from faststream.rabbit import RabbitBroker

from .broker import connect, inbound_subject, outbound_subject, redacted
from .credentials import PASSWORD_SUFFIX, private_directory, read_private, write_private
from .rabbit import agency_user, declare

TIMEOUT = 60  # seconds one rabbitmqctl call may take (it starts an Erlang VM)


class ProvisionError(RuntimeError):
    """RabbitMQ could not be set up as asked; the message says which step and why."""


@dataclass(frozen=True)
class Grant:
    """What an agency's user may do: rabbitmqctl set_permissions' three regular expressions."""

    configure: str
    write: str
    read: str


def grant(agency: str) -> Grant:
    return Grant("^$", f"^{re.escape(inbound_subject(agency))}$", f"^{re.escape(outbound_subject(agency))}$")


@dataclass(frozen=True)
class Provisioned:
    agency: str
    user: str
    password_file: Path
    created: bool  # the user is new (else its password and permissions were set again)


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names: its path, percent-decoded; `/` if it names none."""
    return unquote(urlsplit(url).path.removeprefix("/")) or "/"


class Rabbitmqctl:
    """rabbitmqctl, run for one virtual host; a secret goes on its standard input only."""

    def __init__(self, executable: str = "rabbitmqctl", node: str | None = None) -> None:
        self.command = [executable, *(["--node", node] if node else [])]

    def __call__(self, *args: str, secret: str | None = None) -> str:
        try:
            done = subprocess.run([*self.command, *args], input=secret, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False)
        except FileNotFoundError:
            raise ProvisionError(f"no {self.command[0]} here: run provision where RabbitMQ's rabbitmqctl is "
                                 "installed (or pass --rabbitmqctl PATH)") from None
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"rabbitmqctl {args[0]} did not answer in {TIMEOUT} s") from None
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise ProvisionError(f"rabbitmqctl {args[0]} failed ({done.returncode}): {reason[0]}")
        return done.stdout

    def users(self) -> set[str]:
        return {entry["user"] for entry in json.loads(self("-q", "list_users", "--formatter", "json") or "[]")}


def provision(url: str, agencies: Sequence[str], directory: Path, ctl: Rabbitmqctl) -> list[Provisioned]:
    """Declare the topology as the hub, then make (or bring back in line) each agency's user."""
    existing = ctl.users()  # first: without rabbitmqctl, nothing is done at all
    asyncio.run(_declare(url))
    vhost = vhost_of(url)
    private_directory(directory)
    done = []
    for agency in agencies:
        user, path = agency_user(agency), directory / f"{agency}{PASSWORD_SUFFIX}"
        if not path.exists():
            try:
                write_private(path, secrets.token_urlsafe(32).encode() + b"\n", replace=False)
            except FileExistsError:  # another provision was first: its password stands
                pass
        password = read_private(path, f"the {agency} RabbitMQ password").decode().strip()
        created = user not in existing
        ctl("add_user" if created else "change_password", user, secret=password)
        rights = grant(agency)
        ctl("set_permissions", "-p", vhost, user, rights.configure, rights.write, rights.read)
        done.append(Provisioned(agency, user, path, created))
    return done


async def _declare(url: str) -> None:
    broker = RabbitBroker(url, log_level=logging.DEBUG)
    await connect(broker, url)
    try:
        await declare(broker)
    finally:
        await broker.stop()


def describe(done: Sequence[Provisioned], url: str) -> list[str]:
    """One line per agency: its user, where its password is, what it may do."""
    return [f"{item.agency}: user {item.user} ({'created' if item.created else 'updated'}) on {redacted(url)} "
            f"vhost {vhost_of(url)}, password in {item.password_file}; publishes to exchange "
            f"{inbound_subject(item.agency)}, reads queue {outbound_subject(item.agency)}"
            for item in done]
