"""Rebuilding the read models without downtime.

A rebuild derives a new generation of the read models beside the live one, from
every stored event, while the service goes on answering from (and projecting
into) the live one. It follows the live generation's position, never passing it;
when it has processed exactly what the live one has, it switches them in one
transaction (JourneyView.switch_to) and the service's projection follows the
new generation from there. So nothing is published twice or missed: what the
live generation published stays published, and what comes after is published by
the new one.

Deploying a new playbook goes the same way: the new generation is derived under
it, and each instance whose stages differ between the two generations gets a
revision entry "reclassified under playbook vN".
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from journeys.playbook import Playbook, Scope
from projections import bulk
from projections.stages import StageProjection, next_batch, subject_of
from projections.storage.changes import NotCaughtUp, Revision
from projections.storage.rows import chunks, revision_row
from projections.storage.view import JourneyView

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (position reached, position to reach)


@dataclass(frozen=True)
class Rebuilt:
    generation: int
    retired: int
    position: int
    events: int
    seconds: float
    reclassified: int
    first_pass: bulk.Pass  # the bulk of it: its processes and phases

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Rebuild:
    def __init__(
        self,
        app: Application,
        view: JourneyView,
        playbook: Playbook,
        version: int,
        batch_size: int = 5000,
        progress: Progress | None = None,
        keep_retired: float = 30.0,
        workers: bulk.Workers | None = None,
    ):
        self.app, self.view, self.playbook, self.version = app, view, playbook, version
        self.workers = workers or bulk.Workers(None)  # the processes the first pass runs in (projections/bulk.py)
        self.batch_size = batch_size
        self.progress = progress or (lambda done, total: None)
        self.keep_retired = keep_retired  # seconds a retired generation stays, for readers that have not followed yet

    def run(self, attempts: int = 100) -> Rebuilt:
        started = time.perf_counter()
        view, name = self.view, self.app.name
        view.follow()
        # What earlier rebuilds left: retired generations past their grace, and any that did not finish.
        view.drop_generations(name, ["retired"], _ago(self.keep_retired))
        view.drop_generations(name, ["building"])
        retired = view.generation
        builder = view.begin_generation(self.playbook, self.playbook.fingerprint, indexes=False)
        projection = StageProjection(builder, self.playbook)
        projection.live = False  # what the live generation derived was published and revised already
        events, first, touched = 0, None, set[str]()
        try:
            # The bulk of the log in bulk; then what came meanwhile, batch by batch.
            first_pass = bulk.load(self.app, builder, self._live_position(), self.workers, self.progress)
            events = first_pass.events
            for _ in range(attempts):
                events += self._catch_up(projection, builder, self._live_position(), touched if first is not None else None)
                if first is None:  # the bulk of the work is done: compare with the live generation
                    first = _moved(compare_positions(view, builder, view.query))
                try:
                    revisions = view.switch_to(
                        builder, name, lambda run: self._revisions(view, builder, first, touched, run),  # noqa: B023 - called at once
                        lambda live: self._catch_up(projection, builder, live, touched),  # noqa: B023 - called at once
                    )
                    break
                except NotCaughtUp:
                    continue  # the live generation went on meanwhile: follow it
            else:
                raise RuntimeError(f"writes kept the live read models ahead of the rebuild {attempts} times")
        except BaseException:
            view.execute(f"UPDATE {view.table('generations')} SET state = 'retired', retired_at = started_at "
                         "WHERE generation = ? AND state = 'building'", [builder.generation])
            view.drop_generations(name, ["retired"], _ago(self.keep_retired))
            raise
        position = builder.max_tracking_id(builder.tracking_name(name)) or 0
        return Rebuilt(builder.generation, retired, position, events, time.perf_counter() - started, len(revisions),
                       first_pass)

    def _live_position(self) -> int:
        """How far the live generation is: its runner's position, or its furthest part's."""
        return max(self.view.tracking_positions(self.app.name).values(), default=0)

    def _catch_up(
        self, projection: StageProjection, builder: JourneyView, target: int, touched: set[str] | None
    ) -> int:
        """Process the events after the builder's position up to `target`; how many. The instances
        they belong to go into `touched`, if given."""
        tracking_name = builder.tracking_name(self.app.name)
        position = builder.max_tracking_id(tracking_name) or 0
        processed = 0
        scopes = [s for s in Scope if self.playbook.journeys_of(s) or self.view.playbook.journeys_of(s)]
        while position < target:
            notifications = self.app.recorder.select_notifications(
                start=position + 1, limit=self.batch_size, stop=target
            )
            if not notifications:
                break
            events = [self.app.mapper.to_domain_event(n) for n in notifications]
            records = {str(e.originator_id) for e in events}
            customers_before = builder.roots(records) if touched is not None else {}
            taken = 0
            while taken < len(events):  # an identity link is processed alone
                n = next_batch(events[taken:])
                last = notifications[taken + n - 1].id
                projection.process(events[taken : taken + n], Tracking(tracking_name, last), after=position)
                position, taken = last, taken + n
            if touched is not None:
                touched.update(s for e in events for scope in scopes if (s := subject_of(e, scope)) is not None)
                # A record's touchpoints (and links) move the customer it is linked into, before and after.
                touched.update(customers_before.values(), builder.roots(records).values())
            processed += len(notifications)
            self.progress(position, target)
        return processed

    def _revisions(
        self, view: JourneyView, builder: JourneyView, first: dict[tuple[str, str], Moved],
        touched: set[str], run: Query,
    ) -> list[list[Any]]:
        """In the switch's transaction (both generations at the same position): a revision row for
        each instance whose stages differ between the live generation and the new one.

        `first` compared them after the bulk of the rebuild, the live one maybe ahead. An instance
        no event has touched since is in the same state in both as then; the touched ones are
        compared again now, so the work under the lock is that of the events written meanwhile."""
        moved = {key: entry for key, entry in first.items() if key[1] not in touched}
        if touched:
            moved.update(_moved(compare_positions(view, builder, run, sorted(touched))))
        reason = (
            f"re-derived by a rebuild under playbook v{self.version}" if view.live_playbook == self.playbook.fingerprint
            else f"reclassified under playbook v{self.version}"
        )
        now = datetime.now(UTC)
        return [
            revision_row(Scope(scope), subject, Revision(
                "reclassified", reason, now, None, None, entry["before"], entry["after"], [], [],
            ), self.playbook.fingerprint)
            for (scope, subject), entry in sorted(moved.items())
        ]


Moved = dict[str, dict[str, "str | None"]]  # before / after: journey -> stage
Query = Callable[[str, list[Any]], list[Any]]


def _moved(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Moved]:
    moved: dict[tuple[str, str], Moved] = defaultdict(lambda: {"before": {}, "after": {}})
    for row in rows:
        entry = moved[(row["scope"], row["subject"])]
        entry["before"][row["journey"]] = row["before"]
        entry["after"][row["journey"]] = row["after"]
    return dict(moved)


def compare_positions(
    old: JourneyView, new: JourneyView, run: Query, subjects: list[str] | None = None
) -> list[dict[str, Any]]:
    """(scope, subject, journey, before, after) wherever two generations' stages differ, a journey
    one has and the other not included; of the given instances only, if given."""
    a, b = old.table("positions"), new.table("positions")
    differs = "COALESCE(o.stage, '') != COALESCE(n.stage, '')"
    rows: list[Any] = []
    for chunk in [None] if subjects is None else chunks(subjects):
        only_n = only_o = ""
        params: list[Any] = []
        if chunk is not None:
            marks = ", ".join("?" * len(chunk))
            only_n, only_o = f" AND n.subject IN ({marks})", f" AND o.subject IN ({marks})"
            params = [*chunk, *chunk]
        rows += run(
            f"SELECT n.scope, n.subject, n.journey, o.stage AS before, n.stage AS after FROM {b} n "
            f"LEFT JOIN {a} o ON o.scope = n.scope AND o.journey = n.journey AND o.subject = n.subject "
            f"WHERE (o.subject IS NULL OR {differs}){only_n} "
            f"UNION ALL SELECT o.scope, o.subject, o.journey, o.stage, NULL FROM {a} o "
            f"LEFT JOIN {b} n ON n.scope = o.scope AND n.journey = o.journey AND n.subject = o.subject "
            f"WHERE n.subject IS NULL{only_o}",
            params,
        )
    return [dict(r) for r in rows]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
