"""A follower's copies of declarations: kept from the event before, read back when missing or out of step."""

from __future__ import annotations

from hub.declarations import Declarations
from hub.declarations.replay import Replay

from . import samples


def _events(app: Declarations, declaration_id) -> list:
    return list(app.events.get(declaration_id))


def test_the_copy_before_an_event_is_the_one_kept_or_one_read_back_at_the_version_before(app: Declarations):
    declaration_id = app.submit(samples.goods()).declaration.id
    for n, status in enumerate(("received", "accepted", "released")):
        app.record_response(declaration_id, "customs", f"c-{n}", status, "2026-12-01T09:00:00Z", code="0")
    first, second, third, fourth = _events(app, declaration_id)
    replay = Replay(app, size=10)

    assert replay.before(first) is None
    kept = first.mutate(None)
    replay.keep(kept)
    assert replay.before(second) is kept  # handed over, not read again

    replay.keep(second.mutate(kept))
    skipped = replay.before(fourth)  # the third was applied elsewhere: the copy kept is one version behind
    assert skipped.version == 3 and skipped.agencies["customs"]["status"] == "accepted"
    assert replay.before(third).version == 2  # nothing kept now: read back


def test_only_the_most_recently_used_copies_are_kept(app: Declarations):
    ids = [app.submit(samples.goods(reference=f"KEPT-{n}")).declaration.id for n in range(3)]
    kept = {declaration_id: app.get(declaration_id) for declaration_id in ids}
    replay = Replay(app, size=2)
    for declaration_id in ids:
        replay.keep(kept[declaration_id])
    for declaration_id in (ids[0], ids[2]):
        app.record_response(declaration_id, "customs", "c-1", "received", "2026-12-01T09:00:00Z", code="02")
    assert replay.before(_events(app, ids[2])[1]) is kept[ids[2]]
    forgotten = replay.before(_events(app, ids[0])[1])  # the oldest made room: read back
    assert forgotten is not kept[ids[0]] and forgotten.version == 1
