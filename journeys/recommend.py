"""Choosing the message: a pure function of everything known about a customer.

What it reads (a `Picture`): the customer's stages, the deals, cases and account the customer is
in (each with its stages and the customer's buying role there), the customer's consent and the
messages already sent. In order (shared/DOMAIN.md, "Choosing the message"): consent first, then
the playbook's rules in order; the first eligible rule wins and its first message not yet sent
is the recommendation. Every recommendation says which rule chose it, the stages it read, what
consent suppressed and which later rules it held back.

The same function serves the API, the segment export, the stage-change CloudEvents, replay and
the playbook diff, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from journeys.playbook import Playbook, Scope, StageModel
from journeys.rules import NOT_STARTED, OPEN, STARTED, Kind, Message, Rule
from journeys.stages import Stages, TouchpointLike, in_order

EVERYWHERE = "*"


class ConsentTouchpoint(TouchpointLike, Protocol):
    @property
    def channel(self) -> str | None: ...
    @property
    def campaign(self) -> str | None: ...


@dataclass(frozen=True)
class Choice:
    """One (un)subscription: what it reaches (a channel or every one, a topic or all) and when."""

    channel: str
    topic: str | None
    allowed: bool
    at: datetime
    touchpoint_id: str
    type: str


def consent_of(touchpoints: Iterable[ConsentTouchpoint], playbook: Playbook) -> tuple[Choice, ...]:
    """The latest choice per reach, from the customer's touchpoints in any order."""
    types = playbook.consent
    latest: dict[tuple[str, str | None], Choice] = {}
    for t in in_order(t for t in touchpoints if t.type in types.types):
        everywhere = t.type in types.unsubscribe_everywhere
        channel = EVERYWHERE if everywhere else str(getattr(t.channel, "value", t.channel))
        topic = None if everywhere else (t.campaign or None)
        allowed = t.type in types.subscribe
        latest[(channel, topic)] = Choice(channel, topic, allowed, t.occurred_at, t.touchpoint_id, t.type)
    return tuple(latest.values())


def blocking(consent: Iterable[Choice], channel: str, topic: str | None) -> Choice | None:
    """The unsubscription that holds back marketing on a channel and topic (None: allowed)."""
    reaching = [
        c for c in consent
        if c.channel in (EVERYWHERE, channel) and (c.topic is None or c.topic == topic)
    ]
    if not reaching:
        return None
    decisive = max(reaching, key=lambda c: (c.at, c.topic is not None, c.touchpoint_id))
    return None if decisive.allowed else decisive


@dataclass(frozen=True)
class Membership:
    """An account, deal or case the customer is in, its stages and the customer's role there."""

    scope: Scope
    id: str
    stages: Stages
    buying_role: str | None = None


@dataclass(frozen=True)
class Picture:
    stages: Stages
    memberships: tuple[Membership, ...] = ()
    consent: tuple[Choice, ...] = ()
    sent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Recommendation:
    message: Message | None
    rule: str | None = None
    kind: Kind | None = None
    channel: str | None = None
    matched: tuple[str, ...] = ()  # the stages the rule read, e.g. "complaints: case C-10 at Receipt"
    suppressed: tuple[str, ...] = ()  # eligible rules consent held back, and why
    held_back: tuple[str, ...] = ()  # later eligible rules the chosen one held back
    reason: str = ""


def recommend(playbook: Playbook, picture: Picture) -> Recommendation:
    chosen: Rule | None = None
    matched: tuple[str, ...] = ()
    suppressed: list[str] = []
    suppressed_rules: list[str] = []
    held_back: list[str] = []
    for rule in playbook.rules:
        found = _matches(playbook, rule, picture)
        if found is None:
            continue
        block = blocking(picture.consent, rule.channel.value, rule.topic) if rule.kind is Kind.marketing else None
        if block is not None:
            suppressed.append(f"{rule.name!r}: {_unsubscribed(block)}")
            suppressed_rules.append(repr(rule.name))
        elif chosen is None:
            chosen, matched = rule, found
        else:
            held_back.append(rule.name)
    if chosen is None:
        reason = f"consent suppressed every eligible rule: {'; '.join(suppressed)}" if suppressed else "no rule applies"
        return Recommendation(None, suppressed=tuple(suppressed), reason=reason)
    message = next((m for m in chosen.messages if m.id not in picture.sent), None)
    why = f"rule {chosen.name!r}" + (f" ({'; '.join(matched)})" if matched else "")
    if message is None:
        why += ": every message of it was sent"
    if held_back:
        why += f"; it holds back {', '.join(repr(n) for n in held_back)}"
    if suppressed:
        why += f"; consent suppressed {', '.join(suppressed_rules)}"
    return Recommendation(
        message, chosen.name, chosen.kind, chosen.channel.value, matched, tuple(suppressed), tuple(held_back), why
    )


def _unsubscribed(choice: Choice) -> str:
    reach = "every channel" if choice.channel == EVERYWHERE else choice.channel
    topic = f", topic {choice.topic}" if choice.topic else ""
    return f"{choice.type} ({reach}{topic}) on {choice.at:%Y-%m-%d} by touchpoint {choice.touchpoint_id}"


def _matches(playbook: Playbook, rule: Rule, picture: Picture) -> tuple[str, ...] | None:
    """What the rule read, if all its conditions hold (None: it does not apply)."""
    found: list[str] = []
    for journey, values in rule.when.items():
        model = playbook.journeys[journey]
        if model.scope is Scope.customer:
            position = picture.stages.positions.get(journey)
            stage = position.stage if position else None
            if not _holds(model, stage, values):
                return None
            found.append(f"{journey}: {stage or NOT_STARTED}")
            continue
        instances = [
            (m.id, m.stages.positions[journey].stage)
            for m in picture.memberships if m.scope is model.scope and journey in m.stages.positions
        ]
        if NOT_STARTED in values and all(stage is None for _, stage in instances):
            found.append(f"{journey}: no {model.scope.value} started")
            continue
        hits = [(i, stage) for i, stage in instances if stage is not None and _holds(model, stage, values)]
        if not hits:
            return None
        found.append(f"{journey}: " + ", ".join(f"{model.scope.value} {i} at {stage}" for i, stage in hits))
    return tuple(found)


def _holds(model: StageModel, stage: str | None, values: list[str]) -> bool:
    if stage is None:
        return NOT_STARTED in values
    return (
        stage in values
        or STARTED in values
        or (OPEN in values and stage != model.last and stage not in model.exits)
    )
