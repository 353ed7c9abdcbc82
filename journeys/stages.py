"""Stage derivation: a pure function from a customer's touchpoints and a playbook.

The same code serves the live projection (folding touchpoints in one by one),
a rebuild and an auditor's replay, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable, Protocol, Sequence

from journeys.playbook import RESTART, Journey, Playbook


class TouchpointLike(Protocol):
    touchpoint_id: str
    type: str
    occurred_at: datetime


def sort_key(touchpoint: TouchpointLike) -> tuple[datetime, str]:
    """Occurred order; ties broken by the publisher's touchpoint id."""
    return (touchpoint.occurred_at, touchpoint.touchpoint_id)


@dataclass(frozen=True)
class Position:
    """Where a customer stands in one journey, since when and why."""

    stage: str | None = None
    since: datetime | None = None
    touchpoint_id: str | None = None
    touchpoint_type: str | None = None


@dataclass(frozen=True)
class Transition:
    """The moment a customer entered a stage (or restarted), with its cause."""

    journey: Journey
    from_stage: str | None
    to_stage: str | None
    skipped: tuple[str, ...]
    restart: bool
    at: datetime
    touchpoint_id: str
    touchpoint_type: str


@dataclass(frozen=True)
class Stages:
    """A customer's position in all three journeys, and the last touchpoint folded in."""

    positions: dict[Journey, Position]
    first_seen: datetime | None = None
    last_key: tuple[datetime, str] | None = None

    def __getitem__(self, journey: Journey) -> Position:
        return self.positions[journey]


def initial_stages(playbook: Playbook) -> Stages:
    return Stages(
        positions={j: Position(stage=playbook.journeys[j].initial) for j in Journey}
    )


def advance(
    stages: Stages, touchpoint: TouchpointLike, playbook: Playbook
) -> tuple[Stages, list[Transition]]:
    """Fold one touchpoint, later in occurred order than all before it, into the stages."""
    positions = dict(stages.positions)
    transitions: list[Transition] = []
    first_seen = stages.first_seen or touchpoint.occurred_at
    for journey in Journey:
        model = playbook.journeys[journey]
        current = positions[journey]
        if current.since is None and current.stage is not None:
            # The initial stage (Unaware) holds from the moment the customer is known.
            current = positions[journey] = replace(current, since=first_seen)
        evidence = playbook.stage_for(touchpoint.type, journey)
        if evidence is None:
            continue
        if evidence == RESTART:
            target, skipped = model.initial, ()
            if target == current.stage:
                continue
        else:
            if model.index(evidence) <= model.index(current.stage):
                continue
            target = evidence
            skipped = tuple(model.stages[model.index(current.stage) + 1 : model.index(evidence)])
        positions[journey] = Position(
            stage=target,
            since=touchpoint.occurred_at,
            touchpoint_id=touchpoint.touchpoint_id,
            touchpoint_type=touchpoint.type,
        )
        transitions.append(
            Transition(
                journey=journey,
                from_stage=current.stage,
                to_stage=target,
                skipped=skipped,
                restart=evidence == RESTART,
                at=touchpoint.occurred_at,
                touchpoint_id=touchpoint.touchpoint_id,
                touchpoint_type=touchpoint.type,
            )
        )
    return Stages(positions, first_seen, sort_key(touchpoint)), transitions


@dataclass(frozen=True)
class Derivation:
    stages: Stages
    transitions: list[Transition]
    touchpoints: list[TouchpointLike] = field(default_factory=list)


def in_order(touchpoints: Iterable[TouchpointLike]) -> list[TouchpointLike]:
    """Occurred order, each touchpoint id once (a repeated delivery counts once)."""
    unique: dict[str, TouchpointLike] = {}
    for touchpoint in sorted(touchpoints, key=sort_key):
        unique.setdefault(touchpoint.touchpoint_id, touchpoint)
    return list(unique.values())


def derive(
    touchpoints: Iterable[TouchpointLike],
    playbook: Playbook,
    as_of: datetime | None = None,
) -> Derivation:
    """Stages and stage history from a customer's touchpoints, in any arrival order."""
    ordered = [
        t for t in in_order(touchpoints) if as_of is None or t.occurred_at <= as_of
    ]
    return fold(initial_stages(playbook), ordered, playbook)


def fold(
    stages: Stages, ordered: Sequence[TouchpointLike], playbook: Playbook
) -> Derivation:
    """Fold touchpoints, already in occurred order, into stages."""
    transitions: list[Transition] = []
    for touchpoint in ordered:
        stages, caused = advance(stages, touchpoint, playbook)
        transitions.extend(caused)
    return Derivation(stages, transitions, list(ordered))
