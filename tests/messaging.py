"""Helpers for agency message tests: fixed changes, golden files, a second validator, an outbox."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from adapters.messages import Change, Message, change_of
from adapters.xml import SCHEMA_ROOT
from hub.declarations import Declarations, content_hash, validate_document

GOLDEN = Path(__file__).parent / "golden"
INTEROP = Path(__file__).parent / "interop"  # published schemas and samples, vendored with their licences
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Golden files are made with this time, so they never depend on the clock.
EVENT_TIME = datetime(2026, 3, 2, 8, 30, 15, tzinfo=UTC)


class Outbox:
    """A publisher that keeps what dispatch sends, for the simulated agencies to read."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def publish(self, messages: Sequence[Message]) -> list:
        self.sent.extend(messages)
        return []  # nothing refused


def submitted(document: dict[str, Any], app: Declarations | None = None) -> Change:
    """The Change a submission of `document` makes, at EVENT_TIME."""
    app = app or Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    event = app.prepare_submission(document).collect_events()[0]
    return _at(change_of(event, None))


def amended(before: dict[str, Any], after: dict[str, Any], app: Declarations | None = None) -> Change:
    app = app or Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.prepare_submission(before)
    declaration.collect_events()
    previous = copy.deepcopy(declaration)
    document = validate_document(after)
    declaration.amend(document, content_hash(document), app.routing.route(document))
    return _at(change_of(declaration.collect_events()[0], previous))


def withdrawn(document: dict[str, Any], reason: str, app: Declarations | None = None) -> Change:
    app = app or Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    declaration = app.prepare_submission(document)
    declaration.collect_events()
    previous = copy.deepcopy(declaration)
    declaration.withdraw(reason)
    return _at(change_of(declaration.collect_events()[0], previous))


def _at(change: Change | None) -> Change:
    assert change is not None
    return replace(change, time=EVENT_TIME)


def assert_golden(name: str, body: bytes) -> None:
    """`body` must equal tests/golden/<name>; TRADEHUB_UPDATE_GOLDEN=1 writes it instead."""
    path = GOLDEN / name
    if os.environ.get("TRADEHUB_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    if not path.exists():
        pytest.fail(f"missing golden file {path}: review the message, then run with TRADEHUB_UPDATE_GOLDEN=1",
                    pytrace=False)
    assert body.decode() == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@cache
def second_validator(schema_name: str) -> xmlschema.XMLSchema:
    """xmlschema over the hub's schema, sandboxed, with any blocked import an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmlschema.XMLSchemaImportWarning)
        path = SCHEMA_ROOT / schema_name
        return xmlschema.XMLSchema(str(path), base_url=str(path.parent), allow="sandbox", defuse="always")


def interop(*parts: str) -> Path:
    """A file of a published standard under tests/interop (see its README); one missing is a failure."""
    path = INTEROP.joinpath(*parts)
    assert path.exists(), f"{path} is missing from tests/interop"
    return path
