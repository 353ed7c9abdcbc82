"""A rebuild's first pass over the whole log, in bulk and in several processes.

The live projection (projections/stages.py) takes the log a batch at a time: each batch reads
and writes every instance it names, and every index is kept up to date row by row. A rebuild
starts from nothing and knows where the log ends, so its first pass can do much less:

1. replay the identity links (few) to know each record's customer;
2. decode the events in ranges of the log, in several processes, and load their touchpoints
   and the customers' sealed keys into the new generation, with no secondary index yet;
3. index the touchpoints, then derive each instance once from all its touchpoints (`fold`,
   the one derivation the live projection and replay use), in ranges of instances per scope,
   in several processes: its stages, positions and stage history are loaded (COPY on
   PostgreSQL, executemany on SQLite) and what it adds to the counters is summed;
4. write the counters, the links, the erasures and the position reached, in one
   transaction, then build the other indexes.

The rebuild goes on from that position batch by batch as before (projections/rebuild.py),
and what it holds equals what the live projection holds for the same events: the tests
compare them table by table, both backends, in this process and in worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from journeys.customer import Customer
from journeys.playbook import Playbook, Scope
from journeys.settings import Settings
from projections.partition import is_link
from projections.stages import fold_whole, touchpoint_values
from projections.storage.changes import SubjectChange
from projections.storage.credits import Advance, CreditDeltas, Touch, credit_instance
from projections.storage.derivation import derivation_row
from projections.storage.rows import combination, marks_of, position_row, subject_row, touchpoint_row, transition_row
from projections.storage.schema import (
    CUSTOMERS,
    IDENTITIES,
    INSTANCE_TAGS,
    POSITIONS,
    SUBJECT_COLUMN,
    SUBJECTS,
    TOUCHPOINTS,
    TRANSITIONS,
)
from projections.storage.stays import Deltas, ended_of_row, stay_rows
from projections.storage.tags import tags_of
from projections.storage.view import JourneyView

log = logging.getLogger(__name__)

PAGE = 5_000  # events read from the log at a time
EVENTS_PER_TASK = 20_000  # a range of the log a process takes at a time
TOUCHPOINTS_PER_TASK = 20_000  # about as many touchpoints per range of instances
_COLUMNS = "touchpoint_id, type, occurred_at, criteria, record_id, channel, campaign"
Progress = Callable[[int, int], None]
_AT, _JOURNEY, _TO, _RESTART = (TRANSITIONS.names.index(c) for c in ("occurred_at", "journey", "to_stage", "is_restart"))


@dataclass(frozen=True)
class Workers:
    """How many processes a rebuild's first pass runs in, and how they open the store."""

    settings: Settings | None  # None: only this process can open it (a database in memory)
    count: int = 1
    at_least: int = 20_000  # events under which this process does it all (starting processes costs ~1 s)

    def processes(self, events: int) -> int:
        return self.count if self.settings is not None and self.count > 1 and events >= self.at_least else 1


@dataclass
class Sums:
    """What a range of instances adds to the counters (summed in the main process)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    stays: Deltas = field(default_factory=Deltas)
    tagged: dict[str, Deltas] = field(default_factory=dict)
    credits: CreditDeltas = field(default_factory=CreditDeltas)

    def add(self, other: Sums) -> None:
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.stays.add(other.stays)
        for tag, deltas in other.tagged.items():
            self.tagged.setdefault(tag, Deltas()).add(deltas)
        self.credits.add(other.credits)


def load(app: Application, builder: JourneyView, target: int, workers: Workers, progress: Progress) -> Pass:
    """Derive the builder's generation (empty, without secondary indexes) from the events up to
    `target`, and record that position."""
    took = Pass(processes=workers.processes(target))
    with took.phase("links"):
        links = _links(app, target)
    roots = {record: root for record, (_, root) in links.items()}
    with _pool(took.processes, workers.settings, app, builder, roots) as pool:
        with took.phase("touchpoints"):
            ranges = [(lo, min(lo + EVENTS_PER_TASK - 1, target)) for lo in range(1, target + 1, EVENTS_PER_TASK)]
            erasures = list[tuple[str, datetime]]()
            for found, erased in _each(pool, _touchpoints, ranges):
                took.events, erasures = took.events + found, erasures + erased
                progress(took.events, 2 * target)  # the first half of the work: the log read once
        with took.phase("touchpoint indexes"):
            builder.create_indexes([TOUCHPOINTS.name])
        with took.phase("instances"):
            tasks = [(scope, lo, hi) for scope in builder.playbook.scopes for lo, hi in _ranges(builder, scope)]
            sums, done, total = Sums(), 0, _total(builder)
            for found, part in _each(pool, _instances, tasks):
                sums.add(part)
                done += found
                progress(target + target * done // max(1, total), 2 * target)
    with took.phase("counters"), builder.datastore.transaction(commit=True) as c:
        builder.insert(c, IDENTITIES, [[record, to, root] for record, (to, root) in sorted(links.items())])
        builder.erase_sealed(c, erasures)
        builder.add_counts(c, sums.counts)
        builder.add_stay_rows(c, stay_rows(sums.stays, sums.tagged))
        sums.credits.leads = builder.lead_counts(c)
        builder.add_credit_rows(c, sums.credits.rows())
        if target:
            builder._insert_tracking(c, Tracking(builder.tracking_name(app.name), target))
    with took.phase("indexes"):
        builder.create_indexes()
    progress(2 * target, 2 * target)
    log.info("rebuild's first pass: %s events in %s processes; %s", took.events, took.processes,
             ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.seconds.items()))
    return took


@dataclass
class Pass:
    """What the first pass did: how many events, in how many processes, how long each phase took."""

    processes: int
    events: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - started


# -- 1. identity links --------------------------------------------------------------------


def _links(app: Application, target: int) -> dict[str, tuple[str, str]]:
    """record -> (the record it is linked to, its root) after the links and unlinks up to `target`,
    applied as the live projection applies them (StageProjection._relink)."""
    topics = [get_topic(Customer.IdentityLinked), get_topic(Customer.IdentityUnlinked)]
    links: dict[str, tuple[str, str]] = {}
    below: dict[str, set[str]] = {}  # record -> the records linked to it directly

    def under(record: str) -> list[str]:
        found, frontier = set[str](), [record]
        while frontier:
            frontier = [r for f in frontier for r in below.get(f, ()) if r not in found]
            found.update(frontier)
        return sorted(found)

    position = 0
    while notifications := app.recorder.select_notifications(start=position + 1, limit=PAGE, stop=target, topics=topics):
        for n in notifications:
            e = app.mapper.to_domain_event(n)
            record = str(e.originator_id)
            if isinstance(e, Customer.IdentityLinked):
                root = links[e.to_record][1] if e.to_record in links else e.to_record
                if record in links or root == record:  # refused by the write side, ignored by the projection
                    continue
                moving = under(record)
                links[record] = (e.to_record, root)
                below.setdefault(e.to_record, set()).add(record)
                for r in moving:
                    links[r] = (links[r][0], root)
            elif record in links:
                moving = under(record)
                below[links.pop(record)[0]].discard(record)
                for r in moving:
                    links[r] = (links[r][0], record)
        position = notifications[-1].id
    return links


# -- the processes ------------------------------------------------------------------------

_opened: tuple[Application, JourneyView, dict[str, str]] | None = None  # in each process: what it works with


def _open(settings: Settings, playbook: Playbook, generation: int, roots: dict[str, str]) -> None:
    from projections.system import System  # the composition root imports this module

    global _opened
    app, view = System.stores(settings, playbook)
    _opened = (app, view.building_view(generation, playbook), roots)


class _Here(Executor):
    """This process as the pool: each task runs when submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


@contextmanager
def _pool(processes: int, settings: Settings | None, app: Application, builder: JourneyView,
          roots: dict[str, str]) -> Iterator[Executor]:
    """Where the tasks run: worker processes, each with its own connections, or this process."""
    global _opened
    executor: Executor
    if processes == 1:
        _opened, executor = (app, builder, roots), _Here()
    else:
        assert settings is not None, "Workers.processes: one process for a store only it can open"
        executor = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_open,
                                       initargs=(settings, builder.playbook, builder.generation, roots))
    try:
        yield executor
    finally:
        _opened = None
        executor.shutdown(cancel_futures=True)


def _each(pool: Executor, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
    """Each task's result as it finishes; the first failure is raised (the pool cancels the rest)."""
    for future in as_completed([pool.submit(fn, *task) for task in tasks]):
        yield future.result()


def _stores() -> tuple[Application, JourneyView, dict[str, str]]:
    assert _opened is not None, "a task runs in a pool (_pool)"
    return _opened


# -- 2. touchpoints -----------------------------------------------------------------------


def _touchpoints(lo: int, hi: int) -> tuple[int, list[tuple[str, datetime]]]:
    """Load the touchpoints and sealed keys of the events from `lo` to `hi`, in one transaction
    (decoded before it: another process writes meanwhile on SQLite); how many events, and the
    erasures among them (applied once every touchpoint is in)."""
    app, builder, roots = _stores()
    rows, registered, erasures = list[list[Any]](), dict[str, str](), list[tuple[str, datetime]]()
    events, position = 0, lo - 1
    while notifications := app.recorder.select_notifications(start=position + 1, limit=PAGE, stop=hi):
        for n in notifications:
            if is_link(n.topic):  # applied from _links
                continue
            e = app.mapper.to_domain_event(n)
            record = str(e.originator_id)
            if isinstance(e, Customer.TouchpointRecorded):
                rows.append(touchpoint_row({**touchpoint_values(e), "customer": roots.get(record, record)}))
            elif isinstance(e, Customer.Registered):
                registered.setdefault(record, e.sealed_key)
            elif isinstance(e, Customer.Erased):
                erasures.append((record, e.timestamp))
        events += len(notifications)
        position = notifications[-1].id
    with builder.datastore.transaction(commit=True) as c:
        builder.insert(c, TOUCHPOINTS, rows, "ON CONFLICT (record_id, touchpoint_id) DO NOTHING")
        builder.insert(c, CUSTOMERS, [[r, k, None] for r, k in registered.items()], "ON CONFLICT (record_id) DO NOTHING")
    return events, erasures


# -- 3. instances -------------------------------------------------------------------------


def _ranges(view: JourneyView, scope: Scope) -> list[tuple[str | None, str | None]]:
    """Ranges [lo, hi) of a scope's instances (None: no bound) of about TOUCHPOINTS_PER_TASK
    touchpoints each; an instance is never split."""
    column = SUBJECT_COLUMN[scope]
    rows = view.query(
        f"SELECT s FROM (SELECT {column} AS s, ROW_NUMBER() OVER (ORDER BY {column}) AS n "
        f"FROM {view.table('touchpoints')} WHERE {column} IS NOT NULL) r WHERE n / ? * ? = n",  # every so many
        [TOUCHPOINTS_PER_TASK, TOUCHPOINTS_PER_TASK],
    )
    bounds = sorted({r["s"] for r in rows})
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def _total(view: JourneyView) -> int:
    """How many touchpoints the instances' derivation reads, over all scopes (for the progress)."""
    columns = [SUBJECT_COLUMN[s] for s in view.playbook.scopes]
    counted = ", ".join(f"COUNT({c}) AS {c}" for c in columns)
    row = view.query(f"SELECT {counted} FROM {view.table('touchpoints')}")[0]
    return sum(int(row[c]) for c in columns)


def _instances(scope: Scope, lo: str | None, hi: str | None) -> tuple[int, Sums]:
    """Derive the instances of a scope in [lo, hi) from their touchpoints and load them; how many
    touchpoints that read, and what they add to the counters."""
    _, builder, _ = _stores()
    column = SUBJECT_COLUMN[scope]
    where, params = f"{column} IS NOT NULL", list[Any]()
    if lo is not None:
        where, params = f"{where} AND {column} >= ?", [*params, lo]
    if hi is not None:
        where, params = f"{where} AND {column} < ?", [*params, hi]
    rows = builder.query(f"SELECT {column} AS subject, {_COLUMNS} FROM {builder.table('touchpoints')} "
                         f"WHERE {where} ORDER BY {column}", params)
    loaded = Loaded()
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end]["subject"] != rows[start]["subject"]:
            derive(builder.playbook, scope, rows[start]["subject"], rows[start:end], loaded)
            start = end
    with builder.datastore.transaction(commit=True) as c:
        for table, found in ((SUBJECTS, loaded.subjects), (POSITIONS, loaded.positions),
                             (TRANSITIONS, loaded.transitions), (INSTANCE_TAGS, loaded.tags)):
            builder.dialect.load(c, builder.table(table.name), table.names, found)
    return len(rows), loaded.sums


@dataclass
class Loaded:
    """The rows of some instances, and what they add to the counters."""

    subjects: list[list[Any]] = field(default_factory=list)
    positions: list[list[Any]] = field(default_factory=list)
    transitions: list[list[Any]] = field(default_factory=list)
    tags: list[list[Any]] = field(default_factory=list)
    sums: Sums = field(default_factory=Sums)


def derive(playbook: Playbook, scope: Scope, subject: str, rows: Sequence[Any], into: Loaded) -> None:
    """One instance from all its touchpoint rows, as the live projection derives a customer an
    identity link joins (`fold_whole`): its rows, and its share of the counters."""
    touchpoints, derivation = fold_whole(playbook, scope, [derivation_row(r) for r in rows])
    stages = derivation.stages
    change = SubjectChange(scope, subject, stages, len(touchpoints), derivation.transitions,
                           {t.touchpoint_id: t.record_id for t in touchpoints}, None, [], tuple(stages.positions))
    fingerprint = playbook.fingerprint
    transitions = [transition_row(change, t, fingerprint) for t in derivation.transitions]
    into.subjects.append(subject_row(change))
    into.positions += [position_row(change, j, fingerprint) for j in change.changed]
    into.transitions += transitions
    sums = into.sums
    key = (scope.value, combination(playbook, scope, marks_of(stages)))
    sums.counts[key] = sums.counts.get(key, 0) + 1
    stays = Deltas()
    stays.ended((ended_of_row(r) for r in transitions), 1)
    for journey in change.changed:
        stays.moved(journey, None, stages.positions.get(journey))
    sums.stays.add(stays)
    for tag in sorted(set().union(*(tags_of(r) for r in rows))):
        into.tags.append([scope.value, subject, tag])
        sums.tagged.setdefault(tag, Deltas()).add(stays)
    touches: list[Touch] = [(r["occurred_at"], r["touchpoint_id"], r["campaign"], r["channel"])
                            for r in rows if r["campaign"] is not None]
    advances: list[Advance] = [(r[_AT], subject, r[_JOURNEY], r[_TO]) for r in transitions if not r[_RESTART] and r[_TO] is not None]
    credit_instance(touches, advances, sums.credits)
