"""A late touchpoint in a big history is folded in among the stored ones after it only as far
as it changes anything (projections.stages.refold), and ends where derive() ends."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from journeys.playbook import Scope, load_playbook
from journeys.stages import derive, fold, in_order, initial_stages, sort_key
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


def test_a_late_touchpoint_that_moves_a_stages_entry_earlier_stops_where_the_stored_history_enters_it():
    """A late demo before a stored one: the stage is entered earlier and held for good, yet
    from the stored demo on both folds stand in the same stages (only since when differs), so
    the fold stops there and the end is the stored one with the earlier entry."""
    history = stored(
        tp(f"t{n:04d}", "demo_delivered" if n == 120 else CYCLE[n % 5], n / 10) for n in range(1000)
    )
    derivation, read, until, expected = late_into(history, tp("late", "demo_delivered", 10.05))
    assert until is not None and until - T0 == 12 * DAY and len(read) <= 20  # not the 899 after it
    assert derivation.stages == expected.stages != derive(history, PLAYBOOK).stages
    moved = [j for j, p in expected.stages.positions.items() if p != derive(history, PLAYBOOK).stages.positions[j]]
    assert moved and all(derivation.stages[j].since - T0 == 10.05 * DAY for j in moved)
    kept = [t for t in expected.transitions if t.at - T0 >= 10.05 * DAY and t.at <= until]
    assert derivation.transitions == kept


def test_a_stage_entered_earlier_but_left_later_is_folded_until_it_is_left():
    """If the stored history leaves the stage after entering it, the stay's start (the leaving
    transition's from_since) changes too: the fold goes on until both folds are equal."""
    history = stored(
        tp(f"t{n:04d}", {120: "demo_delivered", 500: "contract_signed"}.get(n, CYCLE[n % 5]), n / 10)
        for n in range(1000)
    )
    derivation, read, until, expected = late_into(history, tp("late", "demo_delivered", 10.05))
    assert until is not None and until - T0 > 12 * DAY and len(read) > 20
    assert derivation.stages == expected.stages
    kept = [t for t in expected.transitions if t.at - T0 >= 10.05 * DAY and t.at <= until]
    assert derivation.transitions == kept
    left = [t for t in kept if t.touchpoint_id == "t0500" and t.from_stage is not None]
    assert left and all(t.from_since - T0 == 10.05 * DAY for t in left)  # the stays the late demo began


TYPES = sorted(PLAYBOOK.evidence) + ["page_scrolled"]  # every kind of evidence, and one that is none
CRITERIA = ["vision", "budget", "authority", "need", "timeframe"]
touchpoints = st.tuples(st.sampled_from(TYPES), st.integers(0, 40), st.lists(st.sampled_from(CRITERIA), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(touchpoints, min_size=1, max_size=40), st.lists(touchpoints, min_size=1, max_size=3),
       st.sampled_from([Scope.customer, Scope.deal]), st.sampled_from([0, 3, 2000]))
@example(  # the late one leaves a journey in another stage that the stored history never leaves, yet
    [("deal_lost", 23, []), ("complaint_filed", 6, []), ("trial_started", 17, [])], [("qualification_assessed", 7, [])],
    Scope.customer, 2000,
)
def test_refold_ends_as_the_whole_derivation_and_changes_nothing_after_where_it_stops(history, late, scope, look):
    """Any history, any late touchpoints (criteria too), either scope, any look: the stages are
    derive()'s, the transitions from the first late one on are derive()'s up to where refold
    stopped, and after it derive() gives the stored history's transitions unchanged, since when
    each stay began included."""
    stored_ = in_order(stored(tp(f"s{n:02d}", t, d / 4, criteria=c) for n, (t, d, c) in enumerate(history)))
    new = in_order(tp(f"l{n}", t, d / 4, criteria=c) for n, (t, d, c) in enumerate(late))
    if sort_key(new[0]) > sort_key(stored_[-1]):
        return  # not late: appended, not refolded
    at = new[0].occurred_at
    before = fold(initial_stages(PLAYBOOK, scope), [t for t in stored_ if t.occurred_at < at], PLAYBOOK).stages
    current = derive(stored_, PLAYBOOK, None, scope).stages
    after = [t for t in stored_ if t.occurred_at >= at]
    derivation, _, until = refold(before, (after[i : i + 3] for i in range(0, len(after), 3)), new, current, PLAYBOOK, look)
    expected = derive([*stored_, *new], PLAYBOOK, None, scope)
    assert derivation.stages == expected.stages
    assert derivation.transitions == [t for t in expected.transitions if t.at >= at and (until is None or t.at <= until)]
    if until is not None:
        unchanged = [t for t in derive(stored_, PLAYBOOK, None, scope).transitions if t.at > until]
        assert [t for t in expected.transitions if t.at > until] == unchanged
