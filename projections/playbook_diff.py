"""What a new playbook would change, changing nothing: every instance whose stage in some
journey differs between the live read models and a derivation under the new playbook, and
every customer whose recommendation (the rule and message chosen) would change.

The derivation is the one pure `derive` the projection, the rebuild and replay use, over
the touchpoints the view holds; so what the diff names is what a rebuild under the new
playbook would reclassify.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from journeys.playbook import Playbook, Scope
from journeys.recommend import Membership, Picture, Recommendation, consent_of, recommend
from journeys.stages import Stages, derive
from projections.picture import wholes
from projections.stages import StoredTouchpoint
from projections.storage.schema import SUBJECT_COLUMN
from projections.storage.view import JourneyView

PAGE = 500
NOT_KEPT = "(not in the playbook)"  # a journey one of the playbooks does not have
RECOMMENDATION = "(recommendation)"  # the move's journey when a customer's next message changes


@dataclass(frozen=True)
class Move:
    scope: Scope
    subject: str  # a customer's record id, or an account, deal or case id
    journey: str
    before: str | None
    after: str | None


def playbook_diff(
    system: Any, new: Playbook, progress: Callable[[int], None] | None = None
) -> Iterator[Move]:
    """The moves, scope by scope, in subject order; `progress` is told each page's instance count."""
    view = system.view
    old = view.playbook
    instances: dict[tuple[Scope, str], Stages] = {}  # accounts, deals, cases derived under the new playbook
    for scope in Scope:
        journeys = [*old.journeys_of(scope), *[j for j in new.journeys_of(scope) if j not in old.journeys_of(scope)]]
        if not journeys:
            continue
        for subjects in _pages(view, scope):
            touchpoints = _touchpoints(view, scope, subjects)
            current = view.load_states(scope, subjects) if old.journeys_of(scope) else {}
            derived = {s: derive(touchpoints.get(s, []), new, scope=scope).stages for s in subjects}
            for subject in subjects:
                after = derived[subject].positions
                before = current[subject][0].positions if subject in current else {}
                for journey in journeys:
                    was = _stage(before, journey, old, scope)
                    now = _stage(after, journey, new, scope)
                    if was != now:
                        yield Move(scope, subject, journey, was, now)
            if scope is Scope.customer:
                yield from _recommendations(system, new, current, derived, touchpoints, instances)
            if progress:
                progress(len(subjects))


def _recommendations(
    system: Any, new: Playbook, current: dict[str, Any], derived: dict[str, Stages],
    touchpoints: dict[str, list[StoredTouchpoint]], instances: dict[tuple[Scope, str], Stages],
) -> Iterator[Move]:
    """Customers whose recommendation differs: the live one against the same picture under `new`
    (its stages, and those of the accounts, deals and cases the customer is in, derived again)."""
    before = wholes(system, {s: current[s][0] for s in derived if s in current})
    for subject, stages in derived.items():
        old = before.get(subject)
        members = []
        for m in old.picture.memberships if old else ():
            if new.journeys_of(m.scope):
                if (m.scope, m.id) not in instances:
                    found = _touchpoints(system.view, m.scope, [m.id]).get(m.id, [])
                    instances[(m.scope, m.id)] = derive(found, new, scope=m.scope).stages
                members.append(Membership(m.scope, m.id, instances[(m.scope, m.id)], m.buying_role))
        sent = old.picture.sent if old else frozenset()
        picture = Picture(stages, tuple(members), consent_of(touchpoints.get(subject, []), new), sent)
        was, now = _said(old.recommendation if old else None), _said(recommend(new, picture))
        if was != now:
            yield Move(Scope.customer, subject, RECOMMENDATION, was, now)


def _said(r: Recommendation | None) -> str | None:
    if r is None or r.rule is None:
        return None
    return f"{r.rule}: {r.message.id if r.message else '(all sent)'}"


def _stage(positions: dict, journey: str, playbook: Playbook, scope: Scope) -> str | None:
    if journey not in playbook.journeys_of(scope):
        return NOT_KEPT
    position = positions.get(journey)
    return position.stage if position else None


def _pages(view: JourneyView, scope: Scope) -> Iterator[list[str]]:
    """The instances of a scope that touchpoints name, a page at a time, by key."""
    column, table = SUBJECT_COLUMN[scope], view.table("touchpoints")
    after = ""
    while True:
        rows = view.query(
            f"SELECT DISTINCT {column} AS subject FROM {table} WHERE {column} > ? ORDER BY {column} LIMIT ?",
            [after, PAGE],
        )
        if not rows:
            return
        subjects = [r["subject"] for r in rows]
        yield subjects
        after = subjects[-1]


def _touchpoints(view: JourneyView, scope: Scope, subjects: list[str]) -> dict[str, list[StoredTouchpoint]]:
    column = SUBJECT_COLUMN[scope]
    rows = view.query(
        f"SELECT {column} AS subject, touchpoint_id, type, occurred_at, criteria, channel, campaign "
        f"FROM {view.table('touchpoints')} "
        f"WHERE {column} IN ({', '.join('?' * len(subjects))})",
        subjects,
    )
    found: dict[str, list[StoredTouchpoint]] = {}
    for row in rows:
        touchpoint = StoredTouchpoint({**dict(row), "criteria": json.loads(row["criteria"]) if row["criteria"] else None})
        found.setdefault(row["subject"], []).append(touchpoint)
    return found


def count_subjects(view: JourneyView, scopes: list[Scope]) -> int:
    """How many instances a diff goes through (for a progress bar)."""
    total = 0
    for scope in scopes:
        column = SUBJECT_COLUMN[scope]
        total += view.query(
            f"SELECT COUNT(DISTINCT {column}) AS n FROM {view.table('touchpoints')} WHERE {column} IS NOT NULL"
        )[0]["n"]
    return total
