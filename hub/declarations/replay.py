"""Declarations as a follower of the log has seen them, for applying the next event to.

Whoever follows the log and needs each declaration as it stood just before an
event (dispatch, to work out what changed; the status board, to derive the
status as the domain does) keeps the declaration its last event left, and
reads it back from the store, at that version, when it has no such copy: it
forgot it, or events came in an order it did not see.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from .application import Declarations
from .domainmodel import Declaration


class Replay:
    """Each declaration after the latest event applied to it, the `size` most recently used kept."""

    def __init__(self, app: Declarations, size: int) -> None:
        self.app = app
        self.size = size
        self._states: OrderedDict[UUID, Declaration] = OrderedDict()

    def before(self, event: Any) -> Declaration | None:
        """The declaration just before `event` (None before the first), no longer kept: `keep` it once applied.

        Handed over rather than copied, because applying the event changes it in place; if that fails, the
        next event reads it back.
        """
        if event.originator_version == 1:
            return None
        state = self._states.pop(event.originator_id, None)
        if state is None or state.version != event.originator_version - 1:
            state = self.app.repository.get(event.originator_id, version=event.originator_version - 1)
        return state

    def keep(self, declaration: Declaration) -> None:
        self._states[declaration.id] = declaration
        if len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()
