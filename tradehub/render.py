"""`tradehub render`: the XML each routed agency would get for a declaration file, storing nothing.

It builds the declaration exactly as a submission would (validation, routing,
id) and asks `adapters.outbound.messages_for` for its messages: the one path
dispatch uses too. Only the issue time differs from a later dispatch, since it
comes from the event, and this event happens now.
"""

from __future__ import annotations

import sys
from pathlib import Path

from adapters.messages import change_of
from adapters.outbound import messages_for
from adapters.xml import InvalidMessage
from hub.declarations import AGENCIES, Declarations, InvalidDeclaration
from hub.declarations.documents import MalformedJSON, load_json
from tradehub.bootstrap import Settings, routing_rules


def render(path: Path, settings: Settings, *, agency: str | None = None, out: Path | None = None) -> int:
    """Print (or write under `out`) the messages for the declaration in `path`.

    Exit status 1 if the file is invalid or not routed to `agency`, 2 if the hub built an invalid message.
    """
    rules = routing_rules(settings)
    try:
        raw = load_json(path.read_bytes())
        declaration = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"}, routing=rules)
        submitted = declaration.prepare_submission(raw).collect_events()[0]
    except OSError as error:
        return _fail(f"{path}: cannot read: {error.strerror}")
    except MalformedJSON as error:
        return _fail(f"{path}: not JSON: {error}")
    except InvalidDeclaration as error:
        for field_error in error.errors:
            print(f"{path}: {field_error}", file=sys.stderr)
        return 1
    change = change_of(submitted, None)
    routed = list(change.routes)
    if agency is not None and agency not in routed:
        return _fail(f"{path}: not routed to {agency}; routed to {', '.join(routed)}")
    wanted = [agency] if agency else list(AGENCIES)
    try:
        messages = messages_for(change, rules, wanted)
    except InvalidMessage as error:  # a mapping bug: say so plainly, never print a half message
        return _fail(f"{path}: the hub built an invalid message, which is a bug: {error}", status=2)
    if out is None:
        for message in messages:
            print(f"{path}: {message.filename} (message {message.message_id})", file=sys.stderr)
            sys.stdout.buffer.write(message.body)
        sys.stdout.flush()
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for message in messages:
        target = out / message.filename
        target.write_bytes(message.body)
        print(target)
    return 0


def _fail(message: str, status: int = 1) -> int:
    print(message, file=sys.stderr)
    return status
