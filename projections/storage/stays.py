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

from journeys.stages import Position
from journeys.storage.tables import ts
from projections.storage.base import ReadModelStore
from projections.storage.schema import STAY_ENDS, STAY_TIMES, STAYS_OPEN, TRANSITIONS

BUCKETS_PER_DOUBLING = 8
NONE = ""  # no stage, in a key column
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
                key = (journey, day(ts(position.since)), position.stage)
                self.open[key] = self.open.get(key, 0) + sign


class StayCounters(ReadModelStore):
    def add_stays(self, c: Any, deltas: Deltas) -> None:
        """Add a batch's deltas to the counters, in its transaction."""
        for table, found in ((STAY_ENDS, deltas.ends), (STAY_TIMES, deltas.times), (STAYS_OPEN, deltas.open)):
            self.accumulate(c, table, [[*key, n] for key, n in sorted(found.items()) if n], "n")

    def deleted_transitions(self, c: Any, where: str, params: Sequence[Any]) -> list[Any]:
        """Delete transitions, returning what their stays' counters need."""
        c.execute(self.dialect.sql(f"DELETE FROM {self.table('transitions')} WHERE {where} RETURNING {ENDED_SQL}"),
                  list(params))
        return [ended_of_record(r) for r in c.fetchall()]

    def recount_stays(self) -> None:
        """Count the stays again from the transitions and positions (a store from before the
        counters, or rows written around the projection, as benchmarks do)."""
        deltas = Deltas()
        transitions, positions = self.table("transitions"), self.table("positions")
        with self.datastore.transaction(commit=False) as c:
            for rows in self.dialect.stream(c, f"SELECT {ENDED_SQL} FROM {transitions}"):
                deltas.ended((ended_of_record(r) for r in rows), 1)
            for rows in self.dialect.stream(c, f"SELECT journey, stage, since FROM {positions} "
                                               "WHERE stage IS NOT NULL AND since IS NOT NULL"):
                for r in rows:
                    key = (r["journey"], day(r["since"]), r["stage"])
                    deltas.open[key] = deltas.open.get(key, 0) + 1
        with self.datastore.transaction(commit=True) as c:
            for table in (STAY_ENDS, STAY_TIMES, STAYS_OPEN):
                c.execute(f"DELETE FROM {self.table(table.name)}")
            self.add_stays(c, deltas)

    # -- reads: days [first, last) of a journey, "" for no bound -----------------------------

    def _days(self, first: str, last: str) -> tuple[str, list[Any]]:
        where, params = "", []
        if first:
            where, params = " AND day >= ?", [first]
        if last:
            where, params = where + " AND day < ?", [*params, last]
        return where, params

    def stay_ends(self, journey: str, first: str, last: str) -> list[dict[str, Any]]:
        """Ended stays (and starts) that began on those days, grouped as the funnel folds them."""
        where, params = self._days(first, last)
        rows = self.query(
            f"SELECT from_stage, to_stage, is_restart, skipped, SUM(n) AS n FROM {self.table('stay_ends')} "
            f"WHERE journey = ?{where} GROUP BY from_stage, to_stage, is_restart, skipped",
            [journey, *params],
        )
        return [{**dict(r), "from_stage": r["from_stage"] or None, "to_stage": r["to_stage"] or None,
                 "n": int(r["n"])} for r in rows if r["n"]]

    def stay_times(self, journey: str, first: str, last: str, restarts: bool) -> dict[str, dict[int, int]]:
        """Per stage left: bucket -> ended stays (with or without those ended by a restart)."""
        where, params = self._days(first, last)
        if not restarts:
            where += " AND is_restart = 0"
        found: dict[str, dict[int, int]] = {}
        for r in self.query(
            f"SELECT from_stage, bucket, SUM(n) AS n FROM {self.table('stay_times')} WHERE journey = ?{where} "
            "GROUP BY from_stage, bucket", [journey, *params],
        ):
            if r["n"]:
                found.setdefault(r["from_stage"], {})[int(r["bucket"])] = int(r["n"])
        return found

    def stays_open(self, journey: str, first: str, last: str) -> dict[str, int]:
        """Per stage: the stays going on now that began on those days."""
        where, params = self._days(first, last)
        rows = self.query(
            f"SELECT stage, SUM(n) AS n FROM {self.table('stays_open')} WHERE journey = ?{where} GROUP BY stage",
            [journey, *params],
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
