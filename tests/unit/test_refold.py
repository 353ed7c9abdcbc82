"""A late touchpoint in a big history is folded in among the stored ones after it only as far
as it changes anything (projections.stages.refold), and ends where derive() ends."""

from __future__ import annotations

from datetime import timedelta

from journeys.playbook import load_playbook
from journeys.stages import derive, fold, initial_stages
from projections.stages import StoredTouchpoint, refold
from tests.factories import tp

PLAYBOOK = load_playbook()
DAY = timedelta(days=1)
T0 = tp("t0", "email_opened", 0).occurred_at
CYCLE = ["website_visited", "email_opened", "ad_clicked", "reply_received", "meeting_held"]


def stored(touchpoints) -> list[StoredTouchpoint]:
    return [StoredTouchpoint(t.model_dump()) for t in touchpoints]


def late_into(history, late, look: int = 2000):
    """What refold gives for `late` against a history of stored touchpoints, and what derive() gives."""
    at = late.occurred_at
    before = fold(initial_stages(PLAYBOOK), [t for t in history if t.occurred_at < at], PLAYBOOK).stages
    current = derive(history, PLAYBOOK).stages
    after = [t for t in history if t.occurred_at >= at]
    later = (after[i : i + 7] for i in range(0, len(after), 7))  # pages, as the view reads them
    derivation, read, until = refold(before, later, [late], current, PLAYBOOK, look)
    return derivation, read, until, derive([*history, late], PLAYBOOK)


def test_a_late_touchpoint_that_changes_nothing_after_it_stops_at_the_next():
    history = stored(tp(f"t{n:04d}", CYCLE[n % 5], n / 10) for n in range(1000))
    derivation, read, until, expected = late_into(history, tp("late", "website_visited", 10.05))
    assert until is not None and len(read) <= 2  # not the 899 touchpoints after it
    assert derivation.stages == expected.stages
    kept = [t for t in expected.transitions if t.at - T0 >= 10.05 * DAY and t.at <= until]
    assert derivation.transitions == kept


def test_a_late_touchpoint_that_moves_a_stage_for_good_folds_every_later_one():
    history = stored(tp(f"t{n:04d}", CYCLE[n % 5], n / 10) for n in range(1000))
    derivation, read, until, expected = late_into(history, tp("late", "demo_delivered", 10.05))
    assert until is None and len(read) == 899
    assert derivation.stages == expected.stages != derive(history, PLAYBOOK).stages
    assert derivation.transitions  # the demo's own
    assert derivation.transitions == [t for t in expected.transitions if t.at - T0 >= 10.05 * DAY]


def test_the_end_of_an_effect_is_looked_for_only_so_far():
    """Past `look` stored touchpoints the fold goes on alone to the end (and still ends right)."""
    history = stored(tp(f"t{n:04d}", CYCLE[n % 5], n / 10) for n in range(1000))
    derivation, read, until, expected = late_into(history, tp("late", "website_visited", 10.05), look=0)
    assert until is None and len(read) == 899
    assert derivation.stages == expected.stages
    assert derivation.transitions == [t for t in expected.transitions if t.at - T0 >= 10.05 * DAY]
