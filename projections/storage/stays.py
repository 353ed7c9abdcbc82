"""Stay counters: the stays of each journey's stages by the day they began, kept by the projection
in each batch's transaction, so funnels and durations read days, not every stay.

A transition ends a stay: `stay_ends` counts them by (journey, day the stay began, stage
left, stage entered, restart, stages skipped), the grouping the funnel folds; a start
from no stage is counted on the day it occurred. `stay_times` holds how long ended stays
lasted in log-spaced buckets (BUCKETS_PER_DOUBLING per doubling: a percentile read from it
is within ±4.4% of the exact one). `stays_open` counts the stays going on now by the day
they began. A batch adds what it inserts and subtracts what it deletes (a late touchpoint
re-deriving the past, a link merging two customers), so the counters always equal a recount
from the stays themselves (`recount_stays`, and a test that compares them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.playbook import Scope
from journeys.stages import Position
from journeys.storage.tables import ts
from projections.storage.base import ReadModelStore
from projections.storage.rows import by_scope
from projections.storage.schema import STAY_TABLES, SUBJECT_COLUMN, TAG_KINDS, TRANSITIONS, Table

BUCKETS_PER_DOUBLING = 8
NONE = ""  # no stage, in a key column
FIRST, LAST = "", "9999-12-31T23:59:59.999999+00:00"  # the bounds of every occurred time (ts()'s text)
# The transition columns a stay's counters are keyed by, in this order (see `Deltas.ended`).
ENDED_COLUMNS = ("journey", "from_stage", "from_since", "occurred_at", "to_stage", "is_restart", "skipped", "stay_seconds")
ENDED_SQL = ", ".join(ENDED_COLUMNS)
_ENDED_AT = [TRANSITIONS.names.index(column) for column in ENDED_COLUMNS]  # their places in a transition row


def nearest_ranks(n: int, quantiles: dict[str, float]) -> dict[str, int]:
    """1-based nearest-rank positions of the quantiles among n sorted values."""
    return {name: max(1, math.ceil(q * n)) for name, q in quantiles.items()}


def ended_of_row(row: Sequence[Any]) -> list[Any]:
    """A transition row (as written, in TRANSITIONS' column order) as `Deltas.ended` takes it."""
    return [row[i] for i in _ENDED_AT]


def ended_of_record(record: Any) -> list[Any]:
    """A transition read by column name, as `Deltas.ended` takes it."""
    return [record[column] for column in ENDED_COLUMNS]


def bucket(seconds: float) -> int:
    """The log-spaced bucket of a duration (-1: under a second)."""
    return -1 if seconds < 1 else math.floor(math.log2(seconds) * BUCKETS_PER_DOUBLING)


def bucket_value(b: int) -> float:
    """A bucket's representative duration: its geometric middle, in whole seconds (0 under a second)."""
    return 0.0 if b < 0 else float(round(2 ** ((b + 0.5) / BUCKETS_PER_DOUBLING)))


def percentiles(histogram: dict[int, int], quantiles: dict[str, float]) -> dict[str, float | None]:
    """Nearest-rank quantiles of the durations a histogram (bucket -> count) holds, to its resolution."""
    total = sum(histogram.values())
    if not total:
        return dict.fromkeys(quantiles)
    found: dict[str, float | None] = {}
    ordered = sorted(histogram.items())
    for name, rank in nearest_ranks(total, quantiles).items():
        seen = 0
        for b, n in ordered:
            seen += n
            if seen >= rank:
                found[name] = bucket_value(b)
                break
    return found


def day(text: str | None) -> str:
    return (text or "")[:10]


class Deltas:
    """What one batch does to the stay counters."""

    def __init__(self) -> None:
        self.ends: dict[tuple[Any, ...], int] = {}
        self.times: dict[tuple[Any, ...], int] = {}
        self.open: dict[tuple[Any, ...], int] = {}

    def ended(self, rows: Iterable[Sequence[Any]], sign: int) -> None:
        """Transitions as (journey, from_stage, from_since, occurred_at, to_stage, is_restart, skipped,
        stay_seconds), added (sign 1) or deleted (-1)."""
        for journey, from_stage, from_since, occurred_at, to_stage, restart, skipped, seconds in rows:
            began = day(from_since if from_stage is not None else occurred_at)
            key = (journey, began, from_stage or NONE, to_stage or NONE, int(restart), skipped)
            self.ends[key] = self.ends.get(key, 0) + sign
            if from_stage is not None and seconds is not None:
                time_key = (journey, began, from_stage, int(restart), bucket(seconds))
                self.times[time_key] = self.times.get(time_key, 0) + sign

    def moved(self, journey: str, before: Position | None, after: Position | None) -> None:
        """A journey's position changed: its open stay is another one now."""
        for position, sign in ((before, -1), (after, 1)):
            if position is not None and position.stage is not None and position.since is not None:
                self.opened(journey, ts(position.since) or "", position.stage, sign)

    def opened(self, journey: str, since: str, stage: str, sign: int = 1) -> None:
        key = (journey, day(since), stage)
        self.open[key] = self.open.get(key, 0) + sign

    def add(self, other: Deltas, sign: int = 1) -> None:
        """Add another's deltas (sign -1: subtract them)."""
        for mine, theirs in zip(self.counters(), other.counters(), strict=True):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + sign * n

    def counters(self) -> tuple[dict[tuple[Any, ...], int], ...]:
        """ends, times, open: in the order of schema.STAY_TABLES."""
        return self.ends, self.times, self.open


def stay_rows(deltas: Deltas, tagged: dict[str, Deltas]) -> list[tuple[Table, list[list[Any]]]]:
    """The rows that add deltas to each counter table (each tag's to the tag tables)."""
    found = []
    for (table, tag_table), counted, i in zip(STAY_TABLES, deltas.counters(), range(3), strict=True):
        found.append((table, [[*key, n] for key, n in sorted(counted.items()) if n]))
        found.append((tag_table, [[tag, *key, n] for tag in sorted(tagged)
                                  for key, n in sorted(tagged[tag].counters()[i].items()) if n]))
    return found


ENDED_OF_X = ", ".join(f"x.{column}" for column in ENDED_COLUMNS)
OPEN_OF_X = "x.journey, x.stage, x.since FROM {positions} x"


class StayCounters(ReadModelStore):
    def add_stays(self, c: Any, deltas: Deltas, tagged: dict[str, Deltas] | None = None) -> None:
        """Add a batch's deltas to the counters, and each tag's to its counters, in its transaction."""
        self.add_stay_rows(c, stay_rows(deltas, tagged or {}))

    def add_stay_rows(self, c: Any, rows: list[tuple[Table, list[list[Any]]]], piece: int = 20_000) -> None:
        """Add the rows, a piece per statement: a recount has millions, and PostgreSQL ends a
        transaction left idle (while the next statement is prepared) for more than a few seconds."""
        for table, found in rows:
            for start in range(0, len(found), piece):
                self.accumulate(c, table, found[start : start + piece], "n")

    def deleted_spans(self, c: Any, spans: Sequence[tuple[str, str, str, str]]) -> list[list[Any]]:
        """Delete each (scope, subject, from, until)'s transitions that occurred from `from` to
        `until` (both included; FIRST and LAST for all of them), together; per span, what its
        stays' counters need."""
        statement = self.dialect.sql(f"DELETE FROM {self.table('transitions')} WHERE scope = ? AND subject = ? "
                                     f"AND occurred_at >= ? AND occurred_at <= ? RETURNING {ENDED_SQL}")
        return [[ended_of_record(r) for r in rows] for rows in self.dialect.each_returning(c, statement, spans)]

    def instance_stays(self, c: Any, instances: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Deltas]:
        """The whole stays of these (scope, subject) instances as they stand in the transaction."""
        instances = list(instances)
        found: dict[tuple[str, str], Deltas] = {key: Deltas() for key in instances}
        for scope, chunk in by_scope(instances):
            journeys = self.playbook.journeys_of(Scope(scope))
            marks = self.dialect.marks(len(chunk))
            c.execute(self.dialect.sql(f"SELECT x.subject, {ENDED_OF_X} FROM {self.table('transitions')} x "
                                       f"WHERE x.scope = ? AND x.subject IN ({marks})"), [scope, *chunk])
            for r in c.fetchall():
                found[(scope, r["subject"])].ended([ended_of_record(r)], 1)
            if not journeys:
                continue
            c.execute(self.dialect.sql(
                f"SELECT x.subject, {OPEN_OF_X.format(positions=self.table('positions'))} "
                f"WHERE x.journey IN ({self.dialect.marks(len(journeys))}) AND x.subject IN ({marks}) "
                "AND x.scope = ? AND x.stage IS NOT NULL AND x.since IS NOT NULL"), [*journeys, *chunk, scope])
            for r in c.fetchall():
                found[(scope, r["subject"])].opened(r["journey"], r["since"], r["stage"])
        return found

    def recount_stays(self) -> None:
        """Count the stays again from the transitions and positions, and which campaigns touched
        each instance from the touchpoints (a store from before the counters,
        or rows written around the projection, as benchmarks do)."""
        transitions, positions, tags = self.table("transitions"), self.table("positions"), self.table("instance_tags")
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {tags}")
            for scope, column in SUBJECT_COLUMN.items():
                for kind in TAG_KINDS:  # scope and kind are ours, never input
                    c.execute(f"INSERT INTO {tags} (scope, subject, tag) SELECT DISTINCT '{scope.value}', {column}, "
                              f"'{kind}:' || {kind} FROM {self.table('touchpoints')} "
                              f"WHERE {column} IS NOT NULL AND {kind} IS NOT NULL")
        deltas, tagged = Deltas(), dict[str, Deltas]()
        joined = f"JOIN {tags} g ON g.scope = x.scope AND g.subject = x.subject"
        with self.datastore.transaction(commit=False) as c:
            for rows in self.dialect.stream(c, f"SELECT {ENDED_OF_X} FROM {transitions} x"):
                deltas.ended((ended_of_record(r) for r in rows), 1)
            for rows in self.dialect.stream(c, f"SELECT g.tag, {ENDED_OF_X} FROM {transitions} x {joined}"):
                for r in rows:
                    tagged.setdefault(r["tag"], Deltas()).ended([ended_of_record(r)], 1)
            where = "WHERE x.stage IS NOT NULL AND x.since IS NOT NULL"
            for rows in self.dialect.stream(c, f"SELECT {OPEN_OF_X.format(positions=positions)} {where}"):
                for r in rows:
                    deltas.opened(r["journey"], r["since"], r["stage"])
            for rows in self.dialect.stream(c, f"SELECT g.tag, {OPEN_OF_X.format(positions=positions)} {joined} {where}"):
                for r in rows:
                    tagged.setdefault(r["tag"], Deltas()).opened(r["journey"], r["since"], r["stage"])
        rows = stay_rows(deltas, tagged)  # before the transaction: PostgreSQL ends one idle for long
        with self.datastore.transaction(commit=True) as c:
            for pair in STAY_TABLES:
                for table in pair:
                    c.execute(f"DELETE FROM {self.table(table.name)}")
            self.add_stay_rows(c, rows)

    # -- reads: days [first, last) of a journey, "" for no bound -----------------------------

    def _days(self, journey: str, first: str, last: str, tag: str | None) -> tuple[str, list[Any]]:
        """The condition on a counter table (its tag's, if given) for a journey's days."""
        where, params = ("tag = ? AND journey = ?", [tag, journey]) if tag is not None else ("journey = ?", [journey])
        if first:
            where, params = where + " AND day >= ?", [*params, first]
        if last:
            where, params = where + " AND day < ?", [*params, last]
        return where, params

    @staticmethod
    def _counter(name: str, tag: str | None) -> str:
        return name if tag is None else f"tag_{name}"

    def stay_ends(self, journey: str, first: str, last: str, tag: str | None = None) -> list[dict[str, Any]]:
        """Ended stays (and starts) that began on those days, grouped as the funnel folds them (of
        the instances with the tag, if given: 'campaign:<name>' or 'channel:<name>')."""
        where, params = self._days(journey, first, last, tag)
        rows = self.query(
            f"SELECT from_stage, to_stage, is_restart, skipped, SUM(n) AS n FROM {self.table(self._counter('stay_ends', tag))} "
            f"WHERE {where} GROUP BY from_stage, to_stage, is_restart, skipped",
            params,
        )
        return [{**dict(r), "from_stage": r["from_stage"] or None, "to_stage": r["to_stage"] or None,
                 "n": int(r["n"])} for r in rows if r["n"]]

    def stay_times(self, journey: str, first: str, last: str, restarts: bool,
                   tag: str | None = None) -> dict[str, dict[int, int]]:
        """Per stage left: bucket -> ended stays (with or without those ended by a restart)."""
        where, params = self._days(journey, first, last, tag)
        if not restarts:
            where += " AND is_restart = 0"
        found: dict[str, dict[int, int]] = {}
        for r in self.query(
            f"SELECT from_stage, bucket, SUM(n) AS n FROM {self.table(self._counter('stay_times', tag))} WHERE {where} "
            "GROUP BY from_stage, bucket", params,
        ):
            if r["n"]:
                found.setdefault(r["from_stage"], {})[int(r["bucket"])] = int(r["n"])
        return found

    def stays_open(self, journey: str, first: str, last: str, tag: str | None = None) -> dict[str, int]:
        """Per stage: the stays going on now that began on those days."""
        where, params = self._days(journey, first, last, tag)
        rows = self.query(
            f"SELECT stage, SUM(n) AS n FROM {self.table(self._counter('stays_open', tag))} WHERE {where} GROUP BY stage",
            params,
        )
        return {r["stage"]: int(r["n"]) for r in rows if r["n"]}

    def open_days(self, journey: str) -> dict[str, dict[str, int]]:
        """Per stage: day -> the stays going on now that began that day."""
        found: dict[str, dict[str, int]] = {}
        for r in self.query(f"SELECT stage, day, n FROM {self.table('stays_open')} WHERE journey = ? AND n != 0",
                            [journey]):
            found.setdefault(r["stage"], {})[r["day"]] = int(r["n"])
        return found

    def open_since_at_rank(self, journey: str, stage: str, days: dict[str, int], rank: int) -> str | None:
        """When the stay going on now with this 1-based rank, youngest first, began: the day that
        holds it from the counters, then that day's stays alone from the positions (exact)."""
        seen = 0
        for d in sorted(days, reverse=True):
            if seen + days[d] >= rank:
                start = datetime.fromisoformat(d).replace(tzinfo=UTC)
                rows = self.query(
                    f"SELECT since FROM {self.table('positions')} WHERE journey = ? AND stage = ? AND since >= ? "
                    "AND since < ? ORDER BY since DESC LIMIT 1 OFFSET ?",
                    [journey, stage, ts(start), ts(start + timedelta(days=1)), rank - seen - 1],
                )
                return rows[0]["since"] if rows else None
            seen += days[d]
        return None
