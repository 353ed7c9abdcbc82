"""The stage projection: turns a batch of stored events into view changes.

Each touchpoint moves the journeys of every instance it names: its customer
record, and its account, deal and case when it carries those keys (their
touchpoints come from several contacts). In-order touchpoints are folded into the
stored stages; a touchpoint that occurred before one already seen (a late or
out-of-order delivery) makes the instance be derived again: a small one from its
first touchpoint (read with the batch's other late instances), a big one from the
stages just before the late touchpoint, only as far as its effect lasts (`refold`),
so the view always equals `derive()` over the same touchpoints.
Personal data is copied as the events hold it, sealed: the projection never
needs a data key.

Identity links: a customer's touchpoints are those of its record and of the records
linked to it (an anonymous visitor's, once identified). A link or an unlink is
processed alone (see `next_batch`): the customers it joins or parts are derived again
from all their touchpoints, and a customer that is joined into another is no more.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking

from journeys import metrics
from journeys.customer import Customer
from journeys.playbook import Playbook, Scope
from journeys.stages import Derivation, Stages, advance, fold, in_order, initial_stages, sort_key
from journeys.storage.tables import ts
from journeys.touchpoint import EARLIEST
from projections.storage.changes import IdentityChange, Revision, SubjectChange
from projections.storage.view import JourneyView

log = logging.getLogger(__name__)
LINK_EVENTS = (Customer.IdentityLinked, Customer.IdentityUnlinked)


def next_batch(events: Sequence[Any]) -> int:
    """How many of these events one `process` call takes: a link event alone, else all up to
    the next link event (so a link is applied between the touchpoints before and after it)."""
    if isinstance(events[0], LINK_EVENTS):
        return 1
    return next((i for i, e in enumerate(events) if isinstance(e, LINK_EVENTS)), len(events))


class StageProjection:
    """Keeps the journey view equal to the derivation of every instance's touchpoints."""

    name = "journey_stages"

    def __init__(self, view: JourneyView, playbook: Playbook, cache_size: int = 50_000, rederive_below: int = 200):
        self.view = view
        self.playbook = playbook
        # Live: new transitions go to the view's outbox for publication, and re-derived pasts
        # leave revision entries. A rebuild re-derives what was published and revised already,
        # so it turns this off.
        self.live = True
        # The states this projection wrote last, so the next batch need not read them back.
        # Valid only while the view's position is the one this projection wrote: a batch
        # that starts anywhere else (another runner went on, a rebuild) starts afresh.
        self.cache_size = cache_size
        # An instance with a late touchpoint and at most this many touchpoints is folded again
        # from its first (its history read with the batch's others), a bigger one from the
        # stages just before the late touchpoint (several queries of its own).
        self.rederive_below = rederive_below
        self._states: OrderedDict[tuple[Scope, str], tuple[Stages, int]] = OrderedDict()
        self._roots: dict[str, str] = {}  # record -> the customer its touchpoints belong to
        self._any_links: bool | None = None  # whether the view holds any identity link (None: not asked)
        self._written_up_to: int | None = None
        # Several parts project (projections/partition.py): each change is written only if its
        # instance still has the touchpoint count this batch read.
        self.checked = False

    def forget(self) -> None:
        self._states.clear()
        self._roots.clear()
        self._any_links = None
        self._written_up_to = None

    def process(self, events: Sequence[Any], tracking: Tracking, after: int | None = None) -> None:
        """Apply a batch of events and record `tracking` with them in one transaction.

        `after` is the view's position the batch follows (the cache is used only if it is ours).
        """
        if after is None or after != self._written_up_to:
            self.forget()
        try:
            self._process(events, tracking)
        except BaseException:
            self.forget()
            raise
        self._written_up_to = tracking.notification_id

    def _process(self, events: Sequence[Any], tracking: Tracking) -> None:
        if any(isinstance(e, LINK_EVENTS) for e in events):
            if len(events) != 1:
                raise ValueError("an identity link event is processed alone: see next_batch")
            self._relink(events[0], tracking)
            return
        recorded, registered, erasures = [], {}, []
        for e in events:
            if isinstance(e, Customer.TouchpointRecorded):
                recorded.append(e)
            elif isinstance(e, Customer.Registered):
                registered[str(e.originator_id)] = e.sealed_key
            elif isinstance(e, Customer.Erased):
                erasures.append((str(e.originator_id), e.timestamp))
        roots = self._roots_of({str(e.originator_id) for e in recorded})
        changes = []
        for scope in self.playbook.scopes:
            by_subject: dict[str, list[Any]] = defaultdict(list)
            for e in recorded:
                subject = roots[str(e.originator_id)] if scope is Scope.customer else subject_of(e, scope)
                if subject is not None:
                    by_subject[subject].append(e)
            for new in by_subject.values():
                new.sort(key=sort_key)
            current = self._current(scope, list(by_subject))
            histories = self._small_late(scope, by_subject, current)
            changes += [self._change(scope, s, new, current.get(s), histories.get(s)) for s, new in by_subject.items()]
        rows = [{**touchpoint_values(e), "customer": roots[str(e.originator_id)]} for e in recorded]
        self.view.write(rows, changes, tracking, registered, erasures, publish=self.live, checked=self.checked)
        for change in changes:  # the new transitions (a rebuild derives none new: not live)
            for t in change.new_transitions:
                metrics.TRANSITIONS.labels(t.journey, t.to_stage or "not_started").inc()
        for change in changes:
            self._states[(change.scope, change.subject)] = (change.stages, change.touchpoint_count)
            self._states.move_to_end((change.scope, change.subject))
        while len(self._states) > self.cache_size:
            self._states.popitem(last=False)

    def _roots_of(self, records: set[str]) -> dict[str, str]:
        if self._any_links is None:  # links are written by this projection only: asked once a run
            self._any_links = self.view.any_links()
        if not self._any_links:
            return {r: r for r in records}
        missing = [r for r in records if r not in self._roots]
        if missing:
            if len(self._roots) > 4 * self.cache_size:
                self._roots.clear()
            self._roots.update(self.view.roots(missing))
        return {r: self._roots[r] for r in records}

    def _relink(self, e: Any, tracking: Tracking) -> None:
        """Join a record's customer into another's (a link), or part them (an unlink), deriving
        each customer that remains from all its touchpoints."""
        view, scope, record = self.view, Scope.customer, str(e.originator_id)
        linked_to = view.linked_to(record)
        if isinstance(e, Customer.IdentityLinked):
            root = view.roots([e.to_record])[e.to_record]
            if linked_to is not None or root == record:  # the write side refuses these; never trust it blindly
                log.warning("identity link of record %s ignored: it would not leave a tree of links", record)
                view.write([], [], tracking)
                return
            moving = [record, *view.linked_below(record)]
            identity = IdentityChange(linked=(record, e.to_record, root), roots=dict.fromkeys(moving, root))
            derive = {root: [*view.touchpoints_from(scope, record, EARLIEST), *view.touchpoints_from(scope, root, EARLIEST)]}
            gone = [record]
        else:
            if linked_to is None:
                view.write([], [], tracking)
                return
            root = view.roots([record])[record]
            below = {record, *view.linked_below(record)}
            identity = IdentityChange(unlinked=record, roots=dict.fromkeys(below, record))
            rows = view.touchpoints_from(scope, root, EARLIEST)
            derive = {root: [r for r in rows if r["record_id"] not in below], record: [r for r in rows if r["record_id"] in below]}
            gone = [s for s, found in derive.items() if not found]
        current = view.load_states(scope, list({*derive, *gone}))
        changes = [self._rederived(s, rows, current.get(s)) for s, rows in derive.items() if rows]
        identity.removed = [(s, current[s][0]) for s in gone if s in current]
        view.write([], changes, tracking, identity=identity, publish=self.live)
        for change in changes:
            for t in change.new_transitions:
                metrics.TRANSITIONS.labels(t.journey, t.to_stage or "not_started").inc()
        self.forget()

    def _rederived(self, subject: str, rows: list[dict[str, Any]], current: Any) -> SubjectChange:
        """A customer derived again from all its touchpoints (each id once)."""
        scope = Scope.customer
        touchpoints, derivation = fold_whole(self.playbook, scope, rows)
        stored = self.view.transitions_of(subject, scope=scope) if self.live and current else []
        seen = {_identity(t) for t in stored}
        fresh = [t for t in derivation.transitions if _identity(t.__dict__) not in seen]
        return SubjectChange(
            scope, subject, derivation.stages, len(touchpoints), derivation.transitions,
            {t.touchpoint_id: t.record_id for t in touchpoints}, EARLIEST, fresh if self.live else [],
            _changed(current, derivation.stages), None, current[0] if current else None,
        )

    def _current(self, scope: Scope, subjects: list[str]) -> dict[str, tuple[Stages, int]]:
        found = {s: self._states[(scope, s)] for s in subjects if (scope, s) in self._states}
        missing = [s for s in subjects if s not in found]
        if missing:
            found.update(self.view.load_states(scope, missing))
        return found

    def _small_late(
        self, scope: Scope, by_subject: dict[str, list[Any]], current: dict[str, tuple[Stages, int]]
    ) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """The whole histories of the instances of a batch that get a late touchpoint and hold at
        most `rederive_below` touchpoints, read together: folding such an instance again from
        its first touchpoint costs less than reading its stages before the late one alone."""
        small = []
        for subject, new in by_subject.items():
            found = current.get(subject)
            if found is not None and is_late(found[0], new) and found[1] <= self.rederive_below:
                small.append(subject)
        return self.view.histories(scope, small, transitions=self.live) if small else {}

    def _change(
        self, scope: Scope, subject: str, new: list[Any], current: Any,
        history: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
    ) -> SubjectChange:
        """What a batch's touchpoints of an instance (`new`, in occurred order) do to it."""
        causes: dict[str, str | None] = {e.touchpoint_id: str(e.originator_id) for e in new}
        stages, count = current or (initial_stages(self.playbook, scope), 0)
        if not is_late(stages, new):
            derivation = fold(stages, new, self.playbook)
            return SubjectChange(
                scope, subject, derivation.stages, count + len(new), derivation.transitions, causes, None,
                derivation.transitions if self.live else [], _changed(current, derivation.stages),
                before=current[0] if current else None, read_count=count,
            )
        # A late touchpoint: fold again from the stages just before it occurred, over the
        # touchpoints from then on; what came earlier cannot change.
        at = new[0].occurred_at
        until = None
        if history is None:
            before = self.view.stages_before(scope, subject, at)
            pages = ([StoredTouchpoint(row) for row in page] for page in self.view.touchpoint_pages(scope, subject, at))
            derivation, later, until = refold(before, pages, in_order(new), current[0], self.playbook)
            stored = self.view.transitions_of(subject, since=at, scope=scope) if self.live else []
            stored = [t for t in stored if until is None or t["at"] <= until]
        else:  # a small instance: folded again from its first touchpoint, its past before `at` unchanged
            rows, transitions = history
            every = [StoredTouchpoint(row) for row in rows]
            later = [t for t in every if t.occurred_at >= at]
            whole = fold(initial_stages(self.playbook, scope), in_order([*every, *new]), self.playbook)
            derivation = Derivation(whole.stages, [t for t in whole.transitions if t.at >= at])
            stored = [t for t in transitions if t["at"] >= at]
        causes.update({t.touchpoint_id: t.record_id for t in later})
        seen = {_identity(t) for t in stored}
        fresh = [t for t in derivation.transitions if _identity(t.__dict__) not in seen]
        return SubjectChange(
            scope, subject, derivation.stages, count + len(new), derivation.transitions, causes, at,
            fresh if self.live else [], _changed(current, derivation.stages),
            _revision(new, current, derivation, stored, fresh) if self.live else None,
            current[0] if current else None, count, until, stored if self.live else None,
        )


def fold_whole(playbook: Playbook, scope: Scope, rows: Iterable[dict[str, Any]]) -> tuple[list[StoredTouchpoint], Derivation]:
    """An instance derived from all its touchpoint rows (as `derivation_row` gives them): its
    touchpoints in occurred order, each id once (the first record's row of an id two records
    hold), and the derivation."""
    touchpoints = in_order([StoredTouchpoint(r) for r in sorted(rows, key=lambda r: r["record_id"])])
    return touchpoints, fold(initial_stages(playbook, scope), touchpoints, playbook)


def is_late(stages: Stages, new: list[Any]) -> bool:
    """Whether touchpoints (in occurred order) come before the last one folded into the stages."""
    return stages.last_key is not None and sort_key(new[0]) <= stages.last_key


LOOK_FOR_THE_END = 2000  # stored touchpoints a late one's effect is followed through, looking for its end


def refold(
    before: Stages, pages: Iterable[list[Any]], new: list[Any], current: Stages, playbook: Playbook,
    look: int = LOOK_FOR_THE_END,
) -> tuple[Derivation, list[Any], datetime | None]:
    """Fold late touchpoints (`new`, in occurred order) in among the stored ones after them
    (`pages` of them, in occurred order), from the stages before the first: the derivation,
    the stored touchpoints read, and the occurred time up to which it differs from the stored
    history.

    The stored history is folded beside it (from the same stages, without the late ones):
    once both have folded the same touchpoint after the last late one into stages that meet
    (`_end_if_met`), every touchpoint after gives both the same, so the fold stops there (after
    the touchpoints of that same time) with the stored stages as its end, but for the entries
    the late touchpoints moved earlier. The time is None when they never meet (the late
    touchpoints changed the stages for good): then every later touchpoint was folded.
    The stored history is folded beside only for the first `look` stored touchpoints: an effect
    that lasts longer is taken to last, and the rest is folded a page at a time at full speed.
    Each touchpoint id counts once, the stored one first, as in in_order.
    """
    stages = old = end = before
    transitions: list[Any] = []
    read: list[Any] = []
    seen: set[str] = set()
    pending = deque(new)
    last_new, until = sort_key(new[-1]), None

    def take(t: Any) -> bool:
        """Fold t in unless its id was folded already; whether it was."""
        nonlocal stages
        if t.touchpoint_id in seen:
            return False
        seen.add(t.touchpoint_id)
        stages, caused = advance(stages, t, playbook)
        transitions.extend(caused)
        return True

    for page in pages:
        if not pending and until is None and len(read) >= look:  # nothing left to compare
            fresh = [t for t in page if t.touchpoint_id not in seen]
            seen.update(t.touchpoint_id for t in fresh)
            folded = fold(stages, fresh, playbook)
            stages = folded.stages
            transitions += folded.transitions
            read += fresh
            continue
        for t in page:
            if until is not None and t.occurred_at > until:
                return Derivation(end, transitions), read, until
            while pending and sort_key(pending[0]) < sort_key(t):
                take(pending.popleft())
            if not take(t):
                continue
            read.append(t)
            if until is None and len(read) <= look:
                old, _ = advance(old, t, playbook)
                if sort_key(t) > last_new and (met := _end_if_met(old, stages, current)) is not None:
                    until, end = t.occurred_at, met
    while pending:
        take(pending.popleft())
    if until is not None:
        return Derivation(end, transitions), read, until
    return Derivation(stages, transitions), read, None


def _end_if_met(old: Stages, new: Stages, current: Stages) -> Stages | None:
    """Where the stored history ends with the late touchpoints in, if the fold without them
    (`old`) and the fold with them (`new`) meet here; None if they do not yet.

    They meet when they are equal, or equal but for when some journeys entered the stage both
    are in (a late touchpoint entered it earlier) while those journeys never move again in
    the stored history (`current`, its end, still holds the position `old` holds here). What
    `advance` does next reads a journey's stage, criteria and defects, not since when it is
    there, so from here on both folds do the same; the end is `current` with those journeys'
    positions from `new`."""
    if old == new:
        return current
    if (old.last_key, old.first_seen, old.met, old.defects) != (new.last_key, new.first_seen, new.met, new.defects):
        return None
    entered = {j: p for j, p in new.positions.items() if p != old.positions.get(j)}
    for j, position in entered.items():
        if position.stage != old.positions[j].stage or current.positions.get(j) != old.positions[j]:
            return None
    return replace(current, positions={**current.positions, **entered})


def _revision(
    new: list[Any], current: Any, derivation: Any, stored: list[dict[str, Any]], added: list[Any]
) -> Revision | None:
    """What a late touchpoint changed in an instance's past, if anything: the stored transitions
    it removed, those it added, the stages before and after."""
    kept = {_identity(t.__dict__) for t in derivation.transitions}
    removed = [t for t in stored if _identity(t) not in kept]
    if not removed and not added:
        return None
    before = current[0].positions if current else {}
    after = derivation.stages.positions
    moved = [j for j in after if before.get(j) is None or before[j].stage != after[j].stage]
    cause = new[0]
    return Revision(
        "late_touchpoint",
        f"touchpoint {cause.touchpoint_id} occurred before touchpoints recorded earlier: the history from "
        f"{ts(cause.occurred_at)} on was derived again",
        max(e.timestamp for e in new), cause.touchpoint_id, str(cause.originator_id),
        {j: before[j].stage if before.get(j) else None for j in moved}, {j: after[j].stage for j in moved},
        removed, [dict(t.__dict__, skipped=list(t.skipped), defects=list(t.defects)) for t in added],
    )


def _changed(current: Any, stages: Stages) -> tuple[str, ...]:
    """The journeys whose stored row must be written: all for a new instance, else those that moved."""
    if current is None:
        return tuple(stages.positions)
    before = current[0]
    return tuple(
        j for j in stages.positions
        if stages[j] != before.positions.get(j)
        or stages.met.get(j) != before.met.get(j)
        or stages.defects.get(j) != before.defects.get(j)
    )


def subject_of(event: Any, scope: Scope) -> str | None:
    """The instance of a scope a recorded touchpoint belongs to (None: it names none)."""
    if scope is Scope.customer:
        return str(event.originator_id)
    return getattr(event, scope.key, None)


def touchpoint_values(e: Any) -> dict[str, Any]:
    return {
        "record_id": str(e.originator_id), "touchpoint_id": e.touchpoint_id, "type": e.type,
        "channel": e.channel, "occurred_at": e.occurred_at, "recorded_at": e.timestamp, "source": e.source,
        "campaign": e.campaign, "deal_id": e.deal_id, "account_id": e.account_id, "case_id": e.case_id,
        "buying_role": e.buying_role, "criteria": e.criteria, "sealed": e.sealed,
    }


def _identity(transition: dict[str, Any]) -> tuple[Any, ...]:
    return (transition["journey"], transition["touchpoint_id"], transition["from_stage"], transition["to_stage"])


class StoredTouchpoint:
    """A touchpoint row of the view, as the derivation reads it."""

    __slots__ = ("touchpoint_id", "type", "occurred_at", "criteria", "record_id", "channel", "campaign")
    touchpoint_id: str
    type: str
    occurred_at: datetime
    criteria: list[str] | None
    record_id: str | None
    channel: str | None
    campaign: str | None

    def __init__(self, row: dict[str, Any]):
        self.touchpoint_id = row["touchpoint_id"]
        self.type = row["type"]
        occurred = row["occurred_at"]
        self.occurred_at = datetime.fromisoformat(occurred) if isinstance(occurred, str) else occurred
        self.criteria = row.get("criteria")
        self.record_id = row.get("record_id")
        self.channel = row.get("channel")
        self.campaign = row.get("campaign")
