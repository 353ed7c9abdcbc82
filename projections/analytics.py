"""Marketing analytics from the stage history the projection keeps, never from events.

A *stay* is the time an instance spent in one stage of a journey. Each transition row
ends a stay (its `from_stage`, entered at `from_since`, lasted `stay_seconds`); a
position row is a stay not ended yet. So a funnel follows the stays entered in a window
(ended ones by `from_since`, open ones by `since`), time in stage is a distribution of
`stay_seconds` and of open stays' ages, and attribution reads the touchpoints before each
advance. Indexes: see `JourneyView._analytics_ddl`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from journeys.playbook import Playbook, StageModel
from journeys.storage.tables import ts
from projections.storage.schema import SUBJECT_COLUMN
from projections.storage.view import JourneyView

PERCENTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9}
MODELS = ("first", "last", "linear", "position")


@dataclass(frozen=True)
class Filters:
    """Which instances and stays count: stays entered in [start, end); instances first seen in
    the cohort's [from, to); instances a campaign or channel touched."""

    start: datetime | None = None
    end: datetime | None = None
    cohort: tuple[datetime, datetime] | None = None
    campaign: str | None = None
    channel: str | None = None


def nearest_ranks(n: int, quantiles: dict[str, float]) -> dict[str, int]:
    """1-based nearest-rank positions of the quantiles among n sorted values."""
    return {name: max(1, math.ceil(q * n)) for name, q in quantiles.items()}


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

    def _quantiles(
        self, table: str, group: str, value: str, where: str, params: list[Any], sizes: dict[Any, int],
        descending: bool = False,
    ) -> dict[Any, dict[str, Any]]:
        """Nearest-rank quantiles of `value` per `group` over the rows `where` selects (sizes: how
        many rows each group has). A group at a time: each is an index range, and the sort is
        of the values alone (sorting by a text group is slow under PostgreSQL's collations)."""
        ranks = {g: nearest_ranks(n, PERCENTILES) for g, n in sizes.items() if n}
        values: dict[tuple[Any, int], Any] = {}
        order = f"{value} DESC" if descending else value
        for g, found in ranks.items():
            wanted = sorted(set(found.values()))
            for row in self.view.query(
                f"SELECT v, r FROM (SELECT {value} AS v, ROW_NUMBER() OVER (ORDER BY {order}) AS r "
                f"FROM {table} x WHERE {where} AND {group} = ?) ranked WHERE r IN ({', '.join('?' * len(wanted))})",
                [*params, g, *wanted],
            ):
                values[(g, row["r"])] = row["v"]
        return {
            g: {name: values.get((g, rank)) for name, rank in ranks[g].items()} if g in ranks
            else dict.fromkeys(PERCENTILES)
            for g in sizes
        }

    # -- funnel ----------------------------------------------------------------

    def funnel(self, journey: str, f: Filters) -> dict[str, Any]:
        """Per stage: the stays entered in the window, how they ended (advanced to the next
        stage, advanced past it, restarted) or that they go on, and the time to advance."""
        model = self._model(journey)
        transitions, positions = self.view.table("transitions"), self.view.table("positions")
        ended_where, ended_params = self._ended(journey, f)
        ended: dict[str, dict[str, int]] = {}
        passed: dict[str, int] = {}
        for row in self.view.query(
            f"SELECT from_stage, to_stage, is_restart, skipped, COUNT(*) AS n FROM {transitions} x "
            f"WHERE {ended_where} GROUP BY from_stage, to_stage, is_restart, skipped",
            ended_params,
        ):
            counts = ended.setdefault(row["from_stage"], {"advanced": 0, "to_next": 0, "restarted": 0})
            if row["is_restart"]:
                counts["restarted"] += row["n"]
                continue
            counts["advanced"] += row["n"]
            if model.index(row["to_stage"]) == model.index(row["from_stage"]) + 1:
                counts["to_next"] += row["n"]
            for stage in json.loads(row["skipped"]):
                passed[stage] = passed.get(stage, 0) + row["n"]
        started_where, started_params = self._started(journey, f)
        for row in self.view.query(  # skips out of 'not started' pass over stages too
            f"SELECT skipped, COUNT(*) AS n FROM {transitions} x WHERE {started_where} GROUP BY skipped",
            started_params,
        ):
            for stage in json.loads(row["skipped"]):
                passed[stage] = passed.get(stage, 0) + row["n"]
        selected, params = self._selected(journey, "x.since", f)
        open_stays = {
            row["stage"]: row["n"]
            for row in self.view.query(
                f"SELECT stage, COUNT(*) AS n FROM {positions} x WHERE journey = ? AND stage IN ({_marks(model.stages)})"
                f"{selected} GROUP BY stage",
                [journey, *model.stages, *params],
            )
        }
        advances = {stage: ended.get(stage, {}).get("advanced", 0) for stage in model.stages}
        quantiles = self._quantiles(
            transitions, "from_stage", "stay_seconds", f"{ended_where} AND is_restart = 0 AND stay_seconds IS NOT NULL",
            ended_params, advances,
        )
        stages = []
        for i, stage in enumerate(model.stages):
            counts = ended.get(stage, {"advanced": 0, "to_next": 0, "restarted": 0})
            entered = counts["advanced"] + counts["restarted"] + open_stays.get(stage, 0)
            advanced = counts["advanced"]
            times = quantiles[stage]
            stages.append({
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
                    "median_seconds": times["p50"], "p90_seconds": times["p90"], "advances": advanced,
                },
            })
        return {"journey": journey, "scope": model.scope.value, "stages": stages}

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
        """Per stage: the distribution of ended stays, and of the stays going on now."""
        now = now or datetime.now(UTC)
        model = self._model(journey)
        stages = model.stages
        transitions, positions = self.view.table("transitions"), self.view.table("positions")
        ended_where = "x.journey = ? AND x.from_stage IS NOT NULL AND x.stay_seconds IS NOT NULL"
        ended_sizes = self._sizes(transitions, "from_stage", ended_where, [journey], stages)
        ended = self._quantiles(transitions, "from_stage", "stay_seconds", ended_where, [journey], ended_sizes)
        current_where = "x.journey = ? AND x.stage IS NOT NULL AND x.since IS NOT NULL"
        current_sizes = self._sizes(positions, "stage", current_where, [journey], stages)
        # The longest stays began first: ages in ascending order are start times in descending order.
        began = self._quantiles(positions, "stage", "since", current_where, [journey], current_sizes, descending=True)
        return [
            {
                "stage": stage,
                "terminal": model.is_terminal(stage),  # its current stays are outcomes ("since"), never stuck
                "ended": {"stays": ended_sizes[stage], **{f"{k}_seconds": v for k, v in ended[stage].items()}},
                "current": {"stays": current_sizes[stage], **{
                    f"{k}_seconds": (now - datetime.fromisoformat(v)).total_seconds() if v else None
                    for k, v in began[stage].items()
                }},
            }
            for stage in stages
        ]

    def _sizes(self, table: str, group: str, where: str, params: list[Any], stages: list[str]) -> dict[str, int]:
        found = {
            row["g"]: int(row["n"])
            for row in self.view.query(f"SELECT {group} AS g, COUNT(*) AS n FROM {table} x WHERE {where} GROUP BY {group}", params)
        }
        return {stage: found.get(stage, 0) for stage in stages}

    def stuck_after(self, journey: str, stage: str) -> float | None:
        """How long a stay in the stage lasts at the 90th percentile of ended stays (None: none ended)."""
        where = "x.journey = ? AND x.from_stage = ? AND x.stay_seconds IS NOT NULL"
        transitions = self.view.table("transitions")
        sizes = self._sizes(transitions, "from_stage", where, [journey, stage], [stage])
        return self._quantiles(transitions, "from_stage", "stay_seconds", where, [journey, stage], sizes)[stage]["p90"]

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
        (touchpoints with a campaign) that occurred before each advance, by the model."""
        scope = self._model(journey).scope
        column = SUBJECT_COLUMN[scope]
        selected, params = self._selected(journey, "x.occurred_at", f)
        rows = self.view.query(
            f"SELECT x.subject, x.occurred_at AS advanced_at, x.touchpoint_id AS cause, t.campaign, t.channel "
            f"FROM {self.view.table('transitions')} x LEFT JOIN {self.view.table('touchpoints')} t "
            f"ON t.{column} = x.subject AND t.occurred_at <= x.occurred_at AND t.campaign IS NOT NULL "
            f"WHERE x.journey = ? AND x.to_stage = ? AND x.is_restart = 0{selected} "
            "ORDER BY x.subject, x.occurred_at, x.touchpoint_id, t.occurred_at, t.touchpoint_id",
            [journey, stage, *params],
        )
        campaigns: dict[str, float] = {}
        channels: dict[str, float] = {}
        advances = unattributed = 0
        for touches in _grouped(rows):
            advances += 1
            if touches[0]["campaign"] is None:
                unattributed += 1
                continue
            for touch, credit in zip(touches, credits(model, len(touches)), strict=True):
                campaigns[touch["campaign"]] = campaigns.get(touch["campaign"], 0.0) + credit
                channel = touch["channel"] or "unknown"
                channels[channel] = channels.get(channel, 0.0) + credit
        return {
            "journey": journey, "stage": stage, "model": model, "advances": advances, "unattributed": unattributed,
            "campaigns": _ranked(campaigns), "channels": _ranked(channels),
        }

    # -- leads and cost --------------------------------------------------------

    def leads(self, f: Filters, by: str = "campaign") -> dict[str, dict[str, int]]:
        """Leads as seed 001 counts them: customers entering the lead funnel (its first stage, or
        further when they skip it; again after a restart) in the window, per campaign (or channel)
        of the touchpoint that made them a lead; how many of those reached the funnel's last stage
        since, and how many became customers (entered the customer journey's first stage) since."""
        if by not in ("campaign", "channel"):
            raise ValueError(f"leads by campaign or channel, not {by!r}")
        funnel = self.playbook.leads
        if funnel.journey not in self.playbook.journeys:
            return {}
        transitions, touchpoints = self.view.table("transitions"), self.view.table("touchpoints")
        window, params = self._window("e.occurred_at", f)
        converted = self.playbook.journeys[funnel.journey].last
        customers = self.playbook.journeys.get(funnel.customers)
        became = (
            f"EXISTS (SELECT 1 FROM {transitions} c WHERE c.scope = e.scope AND c.subject = e.subject "
            "AND c.journey = ? AND c.to_stage = ? AND c.occurred_at >= e.occurred_at)"
        )
        rows = self.view.query(
            f"SELECT k, COUNT(*) AS n, SUM(converted) AS converted, SUM(customer) AS customers FROM ("
            f"SELECT t.{by} AS k, CASE WHEN {became} THEN 1 ELSE 0 END AS converted, "
            f"CASE WHEN {became} THEN 1 ELSE 0 END AS customer "
            f"FROM {transitions} e JOIN {touchpoints} t ON t.record_id = e.record_id AND t.touchpoint_id = e.touchpoint_id "
            f"WHERE e.scope = 'customer' AND e.journey = ? AND e.from_stage IS NULL AND e.to_stage IS NOT NULL{window}"
            ") entries GROUP BY k",
            [funnel.journey, converted, funnel.customers, customers.stages[0] if customers else "", funnel.journey, *params],
        )
        return {
            row["k"] or "(none)": {"leads": int(row["n"]), "converted": int(row["converted"] or 0),
                                   "customers": int(row["customers"] or 0)}
            for row in rows
        }


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


def credits(model: str, n: int) -> list[float]:
    """How a multi-touch model splits one advance over n touches in occurred order."""
    if model not in MODELS:
        raise ValueError(f"unknown attribution model {model!r}; use one of {MODELS}")
    if model == "first":
        return [1.0] + [0.0] * (n - 1)
    if model == "last":
        return [0.0] * (n - 1) + [1.0]
    if model == "linear" or n <= 2:
        return [1.0 / n] * n
    return [0.4] + [0.2 / (n - 2)] * (n - 2) + [0.4]  # position (U-shaped): 40% first and last, 20% between


def _grouped(rows: list[Any]) -> Iterator[list[Any]]:
    """The attribution rows of each advance (subject, time, cause) together."""
    current: list[Any] = []
    key = None
    for row in rows:
        k = (row["subject"], row["advanced_at"], row["cause"])
        if k != key and current:
            yield current
            current = []
        key = k
        current.append(row)
    if current:
        yield current


def _ranked(credit: dict[str, float]) -> list[dict[str, Any]]:
    return [{"name": k, "credit": round(v, 4)} for k, v in sorted(credit.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0]
