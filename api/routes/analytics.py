"""The marketer's analytics: funnel, time in stage, alignment, attribution, cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query

from api.auth import allow
from api.deps import SystemDep
from api.errors import BadQueryError
from api.responses import AlignmentOut, AttributionOut, CostOut, FunnelOut, TimeInStageOut
from journeys.storage.api_keys import Role
from journeys.touchpoint import UtcDatetime, check_text
from projections.analytics import Filters
from projections.spend import PERIOD_PATTERN, SpendError, cost_report, parse_period
from projections.system import System

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[allow(Role.marketer)])

JourneyName = Annotated[str, Query(min_length=1, max_length=50, description="a journey of the playbook")]
From = Annotated[UtcDatetime | None, Query(alias="from", description="stays (advances) from this moment on")]
To = Annotated[UtcDatetime | None, Query(alias="to", description="before this moment")]
Cohort = Annotated[
    str | None,
    Query(max_length=30, pattern=PERIOD_PATTERN,
          description="instances first seen in this month (2025-03) or days (2025-03-01/2025-03-15)"),
]
Name = Annotated[str | None, Query(min_length=1, max_length=200)]
Model = Annotated[Literal["first", "last", "linear", "position"], Query(description="the multi-touch model")]


def journey_of(system: System, journey: str, parameter: str = "journey") -> str:
    if journey not in system.playbook.journeys:
        raise BadQueryError(parameter, f"is not a journey of the playbook; use one of {list(system.playbook.journeys)}")
    return journey


def stage_of(system: System, journey: str, stage: str, parameter: str = "stage") -> str:
    stages = system.playbook.journeys[journey].stages
    if stage not in stages:
        raise BadQueryError(parameter, f"is not a stage of the {journey} journey; use one of {stages}")
    return stage


def filters(start: datetime | None, end: datetime | None, cohort: str | None = None,
            campaign: str | None = None, channel: str | None = None) -> Filters:
    if start is not None and end is not None and end <= start:
        raise BadQueryError("to", "must be after 'from'")
    for parameter, value in (("campaign", campaign), ("channel", channel), ("cohort", cohort)):
        if value is not None:
            try:
                check_text(value)
            except ValueError as error:
                raise BadQueryError(parameter, str(error)) from None
    months = None
    if cohort is not None:
        try:
            first, last = parse_period(cohort)
        except SpendError as error:
            raise BadQueryError("cohort", error.message) from None
        months = (datetime(first.year, first.month, first.day, tzinfo=UTC),
                  datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))
    return Filters(start, end, months, campaign, channel)


@router.get("/funnel", response_model=FunnelOut)
def funnel(
    system: SystemDep, journey: JourneyName, start: From = None, end: To = None, cohort: Cohort = None,
    campaign: Name = None, channel: Name = None,
) -> dict[str, Any]:
    """Per stage: the stays entered in the window (of the cohort, touched by the campaign or
    channel), how many advanced (to the next stage or past it), restarted or are still in it,
    the conversion rate, and the median and 90th percentile time to advance. Stages passed over
    by a skip are counted as `passed_over`, never as entered."""
    f = filters(start, end, cohort, campaign, channel)
    return {**system.analytics.funnel(journey_of(system, journey), f), "window": _window(f)}


@router.get("/time-in-stage", response_model=TimeInStageOut)
def time_in_stage(system: SystemDep, journey: JourneyName) -> dict[str, Any]:
    """Per stage: the median, p75 and p90 of the stays that ended and of those going on now."""
    return {"journey": journey_of(system, journey), "stages": system.analytics.time_in_stage(journey)}


@router.get("/alignment", response_model=AlignmentOut)
def alignment(
    system: SystemDep,
    rows: Annotated[str, Query(max_length=50, description="the journey of the matrix's rows")] = "buyer",
    columns: Annotated[str, Query(max_length=50, description="the journey of its columns")] = "seller",
) -> dict[str, Any]:
    """The current instances in each pair of stages, each cell's process defects (stages the
    columns journey skipped or passed without their criteria), whether the columns journey is
    ahead, behind or aligned (at most one step apart), and the segment of each cell."""
    journey_of(system, rows, "rows")
    journey_of(system, columns, "columns")
    if rows == columns:
        raise BadQueryError("columns", "must be another journey than rows")
    if system.playbook.journeys[rows].scope != system.playbook.journeys[columns].scope:
        raise BadQueryError("columns", f"{rows} and {columns} are kept for different scopes")
    matrix = system.analytics.alignment(rows, columns)
    for cell in matrix["cells"]:
        cell["segment"] = _segment_link({rows: cell["row"], columns: cell["column"]})
    return matrix


@router.get("/attribution", response_model=AttributionOut)
def attribution(
    system: SystemDep, journey: JourneyName,
    stage: Annotated[str, Query(min_length=1, max_length=200, description="the stage advanced to")],
    model: Model = "linear", start: From = None, end: To = None,
) -> dict[str, Any]:
    """Which campaigns and channels get the credit for the advances into a stage in the window:
    each advance's credit (1) is split over the campaign touches before it by the model
    (first, last, linear, or position: 40% first, 40% last, 20% between)."""
    journey_of(system, journey)
    f = filters(start, end)
    found = system.analytics.attribution(journey, stage_of(system, journey, stage), model, f)
    return {**found, "window": _window(f)}


@router.get("/cost", response_model=CostOut, response_model_exclude_unset=True)
def cost(
    system: SystemDep, journey: JourneyName, model: Model = "linear", start: From = None, end: To = None,
) -> dict[str, Any]:
    """Per campaign: spend in the window (prorated by day, per currency), leads (customers who
    entered the playbook's lead funnel in the window, by the campaign of the touchpoint that made
    them a lead), how many converted (reached the funnel's last stage) and became customers, cost
    per lead, and for each stage of the
    journey the advances credited to the campaign (by the model) and the cost per advance.
    Per channel the same leads and advances; spend is recorded per campaign, so no cost."""
    journey_of(system, journey)
    f = filters(start, end)
    analytics = system.analytics
    credited = {stage: analytics.attribution(journey, stage, model, f) for stage in system.playbook.journeys[journey].stages}
    by = {kind: {stage: {c["name"]: c["credit"] for c in found[kind]} for stage, found in credited.items()}
          for kind in ("campaigns", "channels")}
    report = cost_report(system.spend.spent(start, end), analytics.leads(f), by["campaigns"])
    channels = cost_report(None, analytics.leads(f, by="channel"), by["channels"], key="channel")
    return {"journey": journey, "model": model, "window": _window(f), "campaigns": report, "channels": channels}


def _window(f: Filters) -> dict[str, Any]:
    return {"from": f.start, "to": f.end, "cohort": {"from": f.cohort[0], "to": f.cohort[1]} if f.cohort else None,
            "campaign": f.campaign, "channel": f.channel}


def _segment_link(stages: dict[str, str | None]) -> str | None:
    """The segments query of a cell: awareness, buyer and seller by name, one other journey by
    journey and stage (None: two other journeys, which /segments cannot combine)."""
    named = [(j, s or "not_started") for j, s in stages.items() if j in ("awareness", "buyer", "seller")]
    others = [(j, s or "not_started") for j, s in stages.items() if j not in ("awareness", "buyer", "seller")]
    if len(others) > 1:
        return None
    return "/segments?" + urlencode(named + [p for j, s in others for p in (("journey", j), ("stage", s))])
