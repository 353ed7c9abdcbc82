"""Multi-touch attribution: how an advance's credit is split over the campaign touches before it.

An advance's credit (1) goes to its instance's campaign touches (touchpoints with a campaign)
that occurred at or before it, in occurred order, by a model: all to the first, all to the
last, equal shares (linear), or 40% to the first, 40% to the last and 20% shared by those
between (position; linear for one or two touches). What a model needs of the touches is
their count per (campaign, channel) and the first and the last (`Touches`); `split` gives
each model's credit per campaign and per channel in billionths, integers, so the counters
(projections/storage/credits.py) subtract exactly what they once added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

MODELS = ("first", "last", "linear", "position")
NANO = 1_000_000_000  # credit is counted in billionths of an advance
UNKNOWN_CHANNEL = "unknown"

Group = tuple[str, str | None]  # (campaign, channel) of a touch


class Touches:
    """The campaign touches of an instance up to a moment, as the models read them."""

    __slots__ = ("counts", "first", "last", "n")

    def __init__(self) -> None:
        self.counts: dict[Group, int] = {}
        self.n = 0
        self.first: Group | None = None
        self.last: Group | None = None

    def add(self, group: Group) -> None:
        """The next touch in occurred order."""
        self.counts[group] = self.counts.get(group, 0) + 1
        self.n += 1
        if self.first is None:
            self.first = group
        self.last = group


def shares(model: str, touches: Touches) -> dict[Group, float]:
    """How a model splits one advance over the touches (none: an empty split)."""
    if model not in MODELS:
        raise ValueError(f"unknown attribution model {model!r}; use one of {MODELS}")
    n = touches.n
    if not n or touches.first is None or touches.last is None:
        return {}
    if model == "first":
        return {touches.first: 1.0}
    if model == "last":
        return {touches.last: 1.0}
    if model == "linear" or n <= 2:
        return {group: k / n for group, k in touches.counts.items()}
    between = 0.2 / (n - 2)  # position (U-shaped)
    found = {group: k * between for group, k in touches.counts.items()}
    found[touches.first] += 0.4 - between
    found[touches.last] += 0.4 - between
    return found


def split(touches: Touches) -> dict[tuple[str, str, str], int]:
    """(model, 'campaign' or 'channel', name) -> the credit of one advance, in billionths."""
    found: dict[tuple[str, str, str], float] = {}
    for model in MODELS:
        for (campaign, channel), share in shares(model, touches).items():
            for key in ((model, "campaign", campaign), (model, "channel", channel or UNKNOWN_CHANNEL)):
                found[key] = found.get(key, 0.0) + share
    return {key: round(share * NANO) for key, share in found.items()}


def credited(touches: Iterable[tuple[Any, Group]], advances: Iterable[Any]) -> Iterator[tuple[Any, Touches]]:
    """Each advance (sortable by its time, first) with the touches up to it: `touches` are
    (occurred time, group) in occurred order, `advances` in time order; times compare as given
    (the store's text)."""
    seen, pending = Touches(), iter(touches)
    following = next(pending, None)
    for advance in advances:
        while following is not None and following[0] <= advance[0]:
            seen.add(following[1])
            following = next(pending, None)
        yield advance, seen


def ranked(credit: dict[str, float]) -> list[dict[str, Any]]:
    found = [(k, round(v, 4)) for k, v in credit.items()]
    return [{"name": k, "credit": v} for k, v in sorted(found, key=lambda kv: (-kv[1], kv[0])) if v > 0]
