"""Declarations as a follower of the log has seen them, for applying the next event to.

Whoever follows the log and needs each declaration as it stood just before an
event (dispatch, to work out what changed; the status board and the
notifications, to derive the status as the domain does) keeps what its last
event left, and reads it back from the store, at that version, when it has no
such copy: it forgot it, or events came in an order it did not see. What is
kept is the declaration itself, or what a follower folds of it (`read`: the
board's `Folded.of`); either has the declaration's `id` and `version`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from .application import Declarations
from .domainmodel import Declaration


class Kept(Protocol):
    id: UUID
    version: int


State = TypeVar("State", bound=Kept)


def _itself(declaration: Declaration) -> Declaration:
    return declaration


class Replay(Generic[State]):
    """Each declaration after the latest event applied to it, the `size` most recently used kept; `read` makes
    what is kept of a declaration read back from the store (default: the declaration itself)."""

    def __init__(self, app: Declarations, size: int,
                 read: Callable[[Declaration], State] = _itself) -> None:  # type: ignore[assignment]
        self.app = app
        self.size = size
        self.read = read
        self._states: OrderedDict[UUID, State] = OrderedDict()

    def before(self, event: Any) -> State | None:
        """The declaration just before `event` (None before the first), no longer kept: `keep` it once applied.

        Handed over rather than copied, because applying the event changes it in place; if that fails, the
        next event reads it back.
        """
        if event.originator_version == 1:
            return None
        state = self._states.pop(event.originator_id, None)
        if state is None or state.version != event.originator_version - 1:
            state = self.read(self.app.repository.get(event.originator_id, version=event.originator_version - 1))
        return state

    def keep(self, state: State) -> None:
        self._states[state.id] = state
        if len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()
