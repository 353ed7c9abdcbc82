"""Marketing analytics from the stage history the projection keeps, never from events.

A *stay* is the time an instance spent in one stage of a journey. Each transition row
ends a stay (its `from_stage`, entered at `from_since`, lasted `stay_seconds`); a
position row is a stay not ended yet. So a funnel follows the stays entered in a window
(ended ones by `from_since`, open ones by `since`), time in stage is a distribution of
`stay_seconds` and of open stays' ages, and attribution splits each advance over the campaign
touches before it. Whole days of funnels and durations come from the stay counters the
projection keeps (projections/storage/stays.py), of attribution and leads from its credit and
lead counters (projections/storage/credits.py); indexes: `analytics_ddl` in
projections/storage/schema.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.playbook import Playbook, StageModel
from journeys.storage.tables import ts
from projections.attribution import MODELS, NANO, ranked
from projections.storage.credits import CreditDeltas
from projections.storage.schema import SUBJECT_COLUMN
from projections.storage.stays import bucket, nearest_ranks, percentiles
from projections.storage.view import JourneyView

PERCENTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9}


@dataclass(frozen=True)
class Filters:
    """Which instances and stays count: stays entered in [start, end); instances first seen in
    the cohort's [from, to); instances a campaign or channel touched."""

    start: datetime | None = None
    end: datetime | None = None
    cohort: tuple[datetime, datetime] | None = None
    campaign: str | None = None
    channel: str | None = None


class Analytics:
    def __init__(self, view: JourneyView, playbook: Playbook):
        self.view = view
        self.playbook = playbook

    # -- shared pieces ---------------------------------------------------------

    def _model(self, journey: str) -> StageModel:
        return self.playbook.journeys[journey]

    def _instances(self, journey: str, column: str, f: Filters) -> tuple[str, list[Any]]:
        """SQL conditions on an instance column for the cohort, campaign and channel filters."""
        scope = self._model(journey).scope
        conditions, params = [], []
        if f.cohort is not None:
            conditions.append(
                f"{column} IN (SELECT subject FROM {self.view.table('subjects')} "
                "WHERE scope = ? AND first_seen >= ? AND first_seen < ?)"
            )
            params += [scope.value, ts(f.cohort[0]), ts(f.cohort[1])]
        for name, value in (("campaign", f.campaign), ("channel", f.channel)):
            if value is not None:
                conditions.append(
                    f"EXISTS (SELECT 1 FROM {self.view.table('touchpoints')} t "
                    f"WHERE t.{SUBJECT_COLUMN[scope]} = {column} AND t.{name} = ?)"
                )
                params.append(value)
        return "".join(f" AND {c}" for c in conditions), params

    def _selected(self, journey: str, column: str, f: Filters) -> tuple[str, list[Any]]:
        """The window on `column` and the instance filters on x.subject, as one SQL tail."""
        window, params = self._window(column, f)
        instances, instance_params = self._instances(journey, "x.subject", f)
        return window + instances, [*params, *instance_params]

    @staticmethod
    def _window(column: str, f: Filters) -> tuple[str, list[Any]]:
        conditions, params = [], []
        if f.start is not None:
            conditions.append(f"{column} >= ?")
            params.append(ts(f.start))
        if f.end is not None:
            conditions.append(f"{column} < ?")
            params.append(ts(f.end))
        return "".join(f" AND {c}" for c in conditions), params

    # -- funnel ----------------------------------------------------------------

    def funnel(self, journey: str, f: Filters) -> dict[str, Any]:
        """Per stage: the stays entered in the window, how they ended (advanced to the next
        stage, advanced past it, restarted) or that they go on, and the time to advance.

        Whole days of the window are read from the stay counters (projections/storage/stays.py),
        the parts of a day at its ends (and any window with a cohort, campaign or channel
        filter) from the stays themselves; both are folded the same way."""
        model = self._model(journey)
        stages = set(model.stages)
        ended: dict[str, dict[str, int]] = {}
        passed: dict[str, int] = {}
        open_stays: dict[str, int] = {}
        times: dict[str, dict[int, int]] = {}
        rows: list[dict[str, Any]] = []

        def gather(ends: list[dict[str, Any]], going_on: dict[str, int], lasted: dict[str, dict[int, int]]) -> None:
            rows.extend(ends)
            _merge(open_stays, going_on)
            for stage, histogram in lasted.items():
                _merge(times.setdefault(stage, {}), histogram)

        days, windows = self._spans(f)
        tag = _tag(f)
        if days is not None:
            gather(self.view.stay_ends(journey, *days, tag=tag), self.view.stays_open(journey, *days, tag=tag),
                   self.view.stay_times(journey, *days, restarts=False, tag=tag))
        for window in windows:
            gather(self._stay_ends(journey, window), self._stays_open(journey, window), self._stay_times(journey, window))
        for row in rows:
            if row["from_stage"] is None:  # a start: skips out of 'not started' pass over stages too
                if not row["is_restart"] and row["to_stage"] in stages:
                    for stage in json.loads(row["skipped"]):
                        passed[stage] = passed.get(stage, 0) + row["n"]
                continue
            if row["from_stage"] not in stages:
                continue
            counts = ended.setdefault(row["from_stage"], {"advanced": 0, "to_next": 0, "restarted": 0})
            if row["is_restart"]:
                counts["restarted"] += row["n"]
                continue
            counts["advanced"] += row["n"]
            if model.index(row["to_stage"]) == model.index(row["from_stage"]) + 1:
                counts["to_next"] += row["n"]
            for stage in json.loads(row["skipped"]):
                passed[stage] = passed.get(stage, 0) + row["n"]
        out = []
        for i, stage in enumerate(model.stages):
            counts = ended.get(stage, {"advanced": 0, "to_next": 0, "restarted": 0})
            entered = counts["advanced"] + counts["restarted"] + open_stays.get(stage, 0)
            advanced = counts["advanced"]
            found = percentiles(times.get(stage, {}), {"p50": 0.5, "p90": 0.9})
            out.append({
                "stage": stage,
                "next_stage": model.stages[i + 1] if i + 1 < len(model.stages) else None,
                "entered": entered,
                "advanced": advanced,
                "to_next": counts["to_next"],
                "skipped_next": advanced - counts["to_next"],
                "restarted": counts["restarted"],
                "still_in": open_stays.get(stage, 0),
                "passed_over": passed.get(stage, 0),
                "conversion": round(advanced / entered, 4) if entered else None,
                "time_to_advance": {
                    "median_seconds": found["p50"], "p90_seconds": found["p90"], "advances": advanced,
                },
            })
        return {"journey": journey, "scope": model.scope.value, "stages": out}

    @staticmethod
    def _spans(f: Filters) -> tuple[tuple[str, str] | None, list[Filters]]:
        """The whole days of the window the counters answer ("": unbounded), and the windows the
        stays answer: the parts of a day at its ends, or all of it under a cohort or a channel
        (the counters are kept for each campaign, not for channels: storage/tags.py)."""
        if f.cohort is not None or f.channel is not None:
            return None, [f]
        windows, first, last = [], "", ""
        if f.start is not None:
            start = f.start.astimezone(UTC)
            midnight = _midnight(start) if start == _midnight(start) else _midnight(start) + timedelta(days=1)
            first = midnight.date().isoformat()
            if start < midnight:
                windows.append(replace(f, start=start, end=midnight))
        if f.end is not None:
            end = f.end.astimezone(UTC)
            last = _midnight(end).date().isoformat()
            if _midnight(end) < end:
                windows.append(replace(f, start=_midnight(end), end=end))
        if first and last and first >= last:  # not a whole day in it
            return None, [f]
        return (first, last), windows

    def _stay_ends(self, journey: str, f: Filters) -> list[dict[str, Any]]:
        """The stays entered in the window, grouped as the stay counters group them."""
        transitions = self.view.table("transitions")
        ended_where, ended_params = self._ended(journey, f)
        started_where, started_params = self._started(journey, f)
        rows = [dict(r) for r in self.view.query(
            f"SELECT from_stage, to_stage, is_restart, skipped, COUNT(*) AS n FROM {transitions} x "
            f"WHERE {ended_where} GROUP BY from_stage, to_stage, is_restart, skipped", ended_params)]
        return rows + [{**dict(r), "from_stage": None, "is_restart": 0} for r in self.view.query(
            f"SELECT to_stage, skipped, COUNT(*) AS n FROM {transitions} x WHERE {started_where} GROUP BY to_stage, skipped",
            started_params)]

    def _stays_open(self, journey: str, f: Filters) -> dict[str, int]:
        stages = self._model(journey).stages
        selected, params = self._selected(journey, "x.since", f)
        return {
            row["stage"]: int(row["n"])
            for row in self.view.query(
                f"SELECT stage, COUNT(*) AS n FROM {self.view.table('positions')} x WHERE journey = ? "
                f"AND stage IN ({_marks(stages)}){selected} GROUP BY stage",
                [journey, *stages, *params],
            )
        }

    def _stay_times(self, journey: str, f: Filters) -> dict[str, dict[int, int]]:
        """How long the stays entered in the window lasted until they advanced, in the counters' buckets."""
        where, params = self._ended(journey, f)
        found: dict[str, dict[int, int]] = {}
        for row in self.view.query(
            f"SELECT from_stage, stay_seconds FROM {self.view.table('transitions')} x "
            f"WHERE {where} AND is_restart = 0 AND stay_seconds IS NOT NULL", params,
        ):
            histogram = found.setdefault(row["from_stage"], {})
            b = bucket(row["stay_seconds"])
            histogram[b] = histogram.get(b, 0) + 1
        return found

    def _ended(self, journey: str, f: Filters) -> tuple[str, list[Any]]:
        """The conditions selecting the ended stays of a journey entered in the window."""
        # Stage by stage (IN), so the window bounds a range of the stays index in each.
        stages = self._model(journey).stages
        selected, params = self._selected(journey, "x.from_since", f)
        return (
            f"x.journey = ? AND x.from_stage IN ({_marks(stages)}){selected}",
            [journey, *stages, *params],
        )

    def _started(self, journey: str, f: Filters) -> tuple[str, list[Any]]:
        """The conditions selecting a journey's first steps out of 'not started' in the window."""
        stages = self._model(journey).stages  # by the stage entered: the entries index, window as range
        selected, params = self._selected(journey, "x.occurred_at", f)
        return (
            f"x.journey = ? AND x.to_stage IN ({_marks(stages)}) AND x.from_stage IS NULL AND x.is_restart = 0 "
            f"AND x.skipped != '[]'{selected}",
            [journey, *stages, *params],
        )

    # -- time in stage ---------------------------------------------------------

    def time_in_stage(self, journey: str, now: datetime | None = None) -> list[dict[str, Any]]:
        """Per stage: the distribution of ended stays (from the stay counters, to their buckets'
        resolution), and of the stays going on now: exact, each percentile read from the one day
        of stays the counters say holds it."""
        now = now or datetime.now(UTC)
        model = self._model(journey)
        ended = self.view.stay_times(journey, "", "", restarts=True)
        open_days = self.view.open_days(journey)
        out = []
        for stage in model.stages:
            days = open_days.get(stage, {})
            n = sum(days.values())
            current: dict[str, Any] = {"stays": n, **{f"{name}_seconds": None for name in PERCENTILES}}
            for name, rank in (nearest_ranks(n, PERCENTILES) if n else {}).items():
                since = self.view.open_since_at_rank(journey, stage, days, rank)
                current[f"{name}_seconds"] = (now - datetime.fromisoformat(since)).total_seconds() if since else None
            lasted = ended.get(stage, {})
            out.append({
                "stage": stage,
                "terminal": model.is_terminal(stage),  # its current stays are outcomes ("since"), never stuck
                "ended": {"stays": sum(lasted.values()),
                          **{f"{k}_seconds": v for k, v in percentiles(lasted, PERCENTILES).items()}},
                "current": current,
            })
        return out

    def stuck_after(self, journey: str, stage: str) -> float | None:
        """How long a stay in the stage lasts at the 90th percentile of ended stays (None: none ended)."""
        return percentiles(self.view.stay_times(journey, "", "", restarts=True).get(stage, {}), {"p90": 0.9})["p90"]

    # -- alignment -------------------------------------------------------------

    def alignment(self, rows: str, columns: str) -> dict[str, Any]:
        """Instances now in each (rows stage, columns stage) pair, from the counters, with the
        columns journey's process defects; a cell is aligned when the stages are at most one
        step apart (adjacent stages overlap), else the columns journey is ahead or behind."""
        row_model, column_model = self._model(rows), self._model(columns)
        cells: dict[tuple[str | None, str | None], dict[str, int]] = {}
        for combination in self.view.counts():
            stages = combination["stages"]
            if rows not in stages or columns not in stages:
                continue
            key = (stages[rows][0], stages[columns][0])
            cell = cells.setdefault(key, {"instances": 0, "with_defects": 0})
            cell["instances"] += combination["instances"]
            if stages[columns][1]:
                cell["with_defects"] += combination["instances"]
        out = []
        for (r, c), cell in sorted(cells.items(), key=lambda kv: (row_model.index(kv[0][0]), column_model.index(kv[0][1]))):
            gap = column_model.index(c) - row_model.index(r)
            out.append({
                "row": r, "column": c, **cell,
                "alignment": "aligned" if abs(gap) <= 1 else (f"{columns}_ahead" if gap > 0 else f"{columns}_behind"),
            })
        return {
            "rows": rows, "columns": columns, "scope": row_model.scope.value,
            "row_stages": ([None] if row_model.initial is None else []) + list(row_model.stages),
            "column_stages": ([None] if column_model.initial is None else []) + list(column_model.stages),
            "cells": out,
        }

    # -- attribution -----------------------------------------------------------

    def attribution(self, journey: str, stage: str, model: str, f: Filters) -> dict[str, Any]:
        """Credit for the advances into a stage in the window, split over the campaign touches
        (touchpoints with a campaign) that occurred before each advance, by the model.

        Whole days come from the credit counters (projections/storage/credits.py); the parts of a
        day at the window's ends, and any window with a cohort, campaign or channel filter, are
        credited from the advances and touches themselves, the same way."""
        if model not in MODELS:
            raise ValueError(f"unknown attribution model {model!r}; use one of {MODELS}")
        days, windows = (None, [f]) if f.campaign is not None else self._spans(f)
        found = CreditDeltas()
        if days is not None:
            found.add(self.view.credit_days(journey, stage, model, *days))
        for window in windows:
            selected, params = self._selected(journey, "x.occurred_at", window)
            self.view.credit_where(f"x.journey = ? AND x.to_stage = ?{selected}", [journey, stage, *params], found)
        named: dict[str, dict[str, float]] = {"campaign": {}, "channel": {}}
        for (_, _, _, of, kind, name), credit in found.credits.items():
            if of == model:
                named[kind][name] = named[kind].get(name, 0.0) + credit / NANO
        counted = [sum(counts[i] for counts in found.advances.values()) for i in (0, 1)]
        return {
            "journey": journey, "stage": stage, "model": model, "advances": counted[0], "unattributed": counted[1],
            "campaigns": ranked(named["campaign"]), "channels": ranked(named["channel"]),
        }

    # -- leads and cost --------------------------------------------------------

    def leads(self, f: Filters, by: str = "campaign") -> dict[str, dict[str, int]]:
        """Leads as seed 001 counts them: customers entering the lead funnel (its first stage, or
        further when they skip it; again after a restart) in the window, per campaign (or channel)
        of the touchpoint that made them a lead; how many of those reached the funnel's last stage
        since, and how many became customers (entered the customer journey's first stage) since.
        Whole days from the lead counters, the parts of a day at the window's ends from the entries."""
        if by not in ("campaign", "channel"):
            raise ValueError(f"leads by campaign or channel, not {by!r}")
        days, windows = self._spans(Filters(f.start, f.end))
        counted: dict[str, list[int]] = self.view.lead_days(by, *days) if days is not None else {}
        for window in windows:
            for (_, campaign, channel), counts in self.view.leads_where(*self._window("e.occurred_at", window)).items():
                found = counted.setdefault(campaign if by == "campaign" else channel, [0, 0, 0])
                for i, n in enumerate(counts):
                    found[i] += n
        return {
            name or "(none)": {"leads": counts[0], "converted": counts[1], "customers": counts[2]}
            for name, counts in counted.items() if counts[0]
        }


def _merge(into: dict[Any, int], more: dict[Any, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n


def _tag(f: Filters) -> str | None:
    """The stay counters' tag of the campaign the filters name (None: none)."""
    return None if f.campaign is None else f"campaign:{f.campaign}"


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))
