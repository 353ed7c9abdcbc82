"""Stage derivation: a pure function from an instance's touchpoints and a playbook.

An instance is a customer, an account, a deal or a case (the journey's scope);
its touchpoints are those that carry its key, from however many contacts.

The same code serves the live projection (folding touchpoints in one by one),
a rebuild and an auditor's replay, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from journeys.playbook import RESTART, Playbook, Scope, StageModel


class TouchpointLike(Protocol):
    """What the derivation reads of a touchpoint (read-only: frozen models and rows both fit)."""

    @property
    def touchpoint_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...


T = TypeVar("T", bound=TouchpointLike)


def sort_key(touchpoint: TouchpointLike) -> tuple[datetime, str]:
    """Occurred order; ties broken by the publisher's touchpoint id."""
    return (touchpoint.occurred_at, touchpoint.touchpoint_id)


def criteria_of(touchpoint: TouchpointLike) -> tuple[str, ...]:
    """The qualification criteria a touchpoint confirmed (none for most)."""
    return tuple(getattr(touchpoint, "criteria", None) or ())


@dataclass(frozen=True)
class Position:
    """Where an instance (a customer, account, deal or case) stands in one journey, since when and why."""

    stage: str | None = None
    since: datetime | None = None
    touchpoint_id: str | None = None
    touchpoint_type: str | None = None


@dataclass(frozen=True)
class Criterion:
    """A qualification criterion (VBANT) confirmed, since when and by which touchpoint."""

    name: str
    since: datetime
    touchpoint_id: str


@dataclass(frozen=True)
class Transition:
    """The moment an instance entered a stage (or restarted), with its cause."""

    journey: str
    from_stage: str | None
    to_stage: str | None
    skipped: tuple[str, ...]
    restart: bool
    at: datetime
    touchpoint_id: str
    touchpoint_type: str
    # Process defects: stages passed whose required criteria were not confirmed
    # (e.g. presenting to a customer not yet qualified). Allowed, and shown.
    defects: tuple[str, ...] = ()
    # When the stage it left was entered (None: it left 'not started'): the stay it ended,
    # which time-in-stage and funnel analytics measure.
    from_since: datetime | None = None


@dataclass(frozen=True)
class Stages:
    """An instance's position in each journey of its scope, and the last touchpoint folded in.

    `met` holds, per journey with required or expected criteria, the criteria confirmed since the
    journey last restarted; `defects` the process defects since then.
    """

    positions: dict[str, Position]
    first_seen: datetime | None = None
    last_key: tuple[datetime, str] | None = None
    met: dict[str, tuple[Criterion, ...]] = field(default_factory=dict)
    defects: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __getitem__(self, journey: str) -> Position:
        return self.positions[journey]


def initial_stages(playbook: Playbook, scope: Scope = Scope.customer) -> Stages:
    return Stages(
        positions={j: Position(stage=playbook.journeys[j].initial) for j in playbook.journeys_of(scope)}
    )


def advance(
    stages: Stages, touchpoint: TouchpointLike, playbook: Playbook
) -> tuple[Stages, list[Transition]]:
    """Fold one touchpoint, later in occurred order than all before it, into the stages."""
    positions = dict(stages.positions)
    met = dict(stages.met)
    defects = dict(stages.defects)
    transitions: list[Transition] = []
    first_seen = stages.first_seen or touchpoint.occurred_at
    confirmed = criteria_of(touchpoint)
    evidence = playbook.evidence_of(touchpoint.type)
    for journey in positions:
        model = playbook.journeys[journey]
        current = positions[journey]
        if current.since is None and current.stage is not None:
            # The initial stage (Unaware) holds from the moment the customer is known.
            current = positions[journey] = replace(current, since=first_seen)
        evidenced = evidence.get(journey)
        if evidenced is None and not model.qualification:
            continue  # the common case: nothing for this journey (what _target would say)
        if confirmed and model.qualification:
            known = {c.name for c in met.get(journey, ())}
            fresh = [
                Criterion(c, touchpoint.occurred_at, touchpoint.touchpoint_id)
                for c in dict.fromkeys(confirmed) if c not in known  # each once, in the order given
            ]
            met[journey] = (*met.get(journey, ()), *fresh)
        target, skipped, flagged = _target(model, current.stage, evidenced, met.get(journey, ()))
        if target is _STAY:
            continue
        # A restart, or a new cycle begun from an exit stage (a former customer buying again).
        restart = target is _RESTART or current.stage in model.exits
        if target is _RESTART:
            target = model.initial
        if restart:
            met.pop(journey, None)
            defects.pop(journey, None)
        if flagged:
            defects[journey] = (*defects.get(journey, ()), *flagged)
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
                restart=restart,
                at=touchpoint.occurred_at,
                touchpoint_id=touchpoint.touchpoint_id,
                touchpoint_type=touchpoint.type,
                defects=flagged,
                from_since=current.since if current.stage is not None else None,
            )
        )
    return Stages(positions, first_seen, sort_key(touchpoint), met, defects), transitions


_STAY = object()
_RESTART = object()


def _target(
    model: StageModel, current: str | None, evidence: str | None, met: tuple[Criterion, ...]
) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """Where a journey goes on this touchpoint: (stage or _STAY or _RESTART, skipped, defects)."""
    if evidence == RESTART:
        return (_STAY if model.initial == current else _RESTART), (), ()
    if evidence is not None and model.exits:
        if evidence in model.exits:  # reached from anywhere: nothing between is skipped
            return (_STAY if evidence == current else evidence), (), ()
        if current in model.exits:  # a new cycle: it starts again at the evidenced stage
            cycle_skips = tuple(model.stages[: model.index(evidence)])
            return evidence, cycle_skips, _required(model, cycle_skips)
    if not model.qualification:  # the common case: evidence alone moves it, only forward
        if evidence is None or model.index(evidence) <= model.index(current):
            return _STAY, (), ()
        passed = tuple(model.stages[model.index(current) + 1 : model.index(evidence)])
        return evidence, passed, _required(model, passed)
    confirmed = {c.name for c in met}
    # The furthest stage whose required criteria are all confirmed now (reached by the
    # confirmation itself), and the evidenced stage unless it waits for criteria.
    candidates = [
        stage for stage, needed in model.requires.items()
        if set(needed) <= confirmed and model.index(stage) > model.index(current)
    ]
    if evidence is not None and set(model.requires.get(evidence, ())) <= confirmed:
        candidates.append(evidence)
    candidates = [c for c in candidates if model.index(c) > model.index(current)]
    if not candidates:
        return _STAY, (), ()
    target = max(candidates, key=model.index)
    start, end = model.index(current), model.index(target)
    skipped = tuple(model.stages[start + 1 : end])
    flagged = _required(model, skipped)
    # A defect for each stage left behind (skipped, or reached and passed) without its criteria.
    flagged += tuple(
        f"{stage} {'skipped' if model.index(stage) > start else 'passed'}: "
        f"{', '.join(c for c in needed if c not in confirmed)} not confirmed"
        for stage, needed in model.qualification.items()
        if start <= model.index(stage) < end and not set(needed) <= confirmed
    )
    return target, skipped, flagged


def _required(model: StageModel, skipped: Sequence[str]) -> tuple[str, ...]:
    """The defects of skipping stages of a journey whose every stage is required."""
    return tuple(f"{stage} skipped: every stage is required" for stage in skipped) if model.every_stage_required else ()


@dataclass(frozen=True)
class Derivation:
    stages: Stages
    transitions: list[Transition]
    touchpoints: list[TouchpointLike] = field(default_factory=list)


def in_order(touchpoints: Iterable[T]) -> list[T]:
    """Occurred order, each touchpoint id once (a repeated delivery counts once)."""
    unique: dict[str, T] = {}
    for touchpoint in sorted(touchpoints, key=sort_key):
        unique.setdefault(touchpoint.touchpoint_id, touchpoint)
    return list(unique.values())


def derive(
    touchpoints: Iterable[TouchpointLike],
    playbook: Playbook,
    as_of: datetime | None = None,
    scope: Scope = Scope.customer,
) -> Derivation:
    """Stages and stage history of one instance of a scope from its touchpoints, in any arrival order."""
    ordered = [
        t for t in in_order(touchpoints) if as_of is None or t.occurred_at <= as_of
    ]
    return fold(initial_stages(playbook, scope), ordered, playbook)


def fold(
    stages: Stages, ordered: Sequence[TouchpointLike], playbook: Playbook
) -> Derivation:
    """Fold touchpoints, already in occurred order, into stages."""
    transitions: list[Transition] = []
    for touchpoint in ordered:
        stages, caused = advance(stages, touchpoint, playbook)
        transitions.extend(caused)
    return Derivation(stages, transitions, list(ordered))
