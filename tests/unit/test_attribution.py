"""The attribution models, as the credit counters keep them: each model's split of one advance
from the touches' counts, first and last (Touches), equals crediting the touches one by one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.attribution import MODELS, NANO, Touches, credited, shares, split


def one_by_one(model: str, touches: list[tuple[str, str | None]]) -> dict[tuple[str, str | None], float]:
    """The models as marketers state them, touch by touch in occurred order."""
    n = len(touches)
    if model == "first":
        weights = [1.0] + [0.0] * (n - 1)
    elif model == "last":
        weights = [0.0] * (n - 1) + [1.0]
    elif model == "linear" or n <= 2:
        weights = [1.0 / n] * n
    else:
        weights = [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]
    found: dict[tuple[str, str | None], float] = {}
    for touch, weight in zip(touches, weights, strict=True):
        found[touch] = found.get(touch, 0.0) + weight
    return found


groups = st.tuples(st.sampled_from(["spring", "autumn", "webinar"]), st.sampled_from(["ads", "email", None]))


@given(st.lists(groups, min_size=1, max_size=30))
def test_each_model_splits_an_advance_as_crediting_touch_by_touch(touches):
    seen = Touches()
    for touch in touches:
        seen.add(touch)
    for model in MODELS:
        expected = one_by_one(model, touches)
        found = shares(model, seen)
        for group in expected.keys() | found.keys():
            assert abs(found.get(group, 0.0) - expected.get(group, 0.0)) < 1e-9, (model, group)
        assert abs(sum(found.values()) - 1.0) < 1e-9
    parts = split(seen)
    for model in MODELS:  # every model gives one advance, in billionths, to campaigns and to channels alike
        for kind in ("campaign", "channel"):
            total = sum(n for (m, k, _), n in parts.items() if (m, k) == (model, kind))
            assert abs(total - NANO) <= len(touches)
    assert parts[("first", "channel", touches[0][1] or "unknown")] >= NANO * 0.999


def test_no_touch_no_credit_and_an_unknown_model_is_refused():
    assert split(Touches()) == {}
    with pytest.raises(ValueError, match="unknown attribution model"):
        shares("everything", Touches())


def test_each_advance_counts_the_touches_at_or_before_it():
    touches = [("2026-01-01", ("a", "ads")), ("2026-01-03", ("b", "email")), ("2026-01-03", ("c", None))]
    advances = [("2026-01-01", "x"), ("2026-01-02", "y"), ("2026-01-03", "z"), ("2026-01-09", "w")]
    assert [(advance[1], seen.n, seen.last) for advance, seen in credited(touches, advances)] == [
        ("x", 1, ("a", "ads")), ("y", 1, ("a", "ads")), ("z", 3, ("c", None)), ("w", 3, ("c", None))]
