"""Response models of the read routes that answer from the analytics, the timelines, the audit
trail and the playbook: what each answer holds, in the OpenAPI document and checked on the
way out (a read model that drifts from its route fails there, not in a client)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import MembershipOut, RecommendationOut
from journeys.chain import Checkpoint

Money = dict[str, str]  # currency -> amount, two decimals ("1250.00")


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- analytics ----------------------------------------------------------------------------


class CohortWindow(Answer):
    from_: datetime = Field(alias="from")
    to: datetime


class WindowOut(Answer):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    cohort: CohortWindow | None = None
    campaign: str | None = None
    channel: str | None = None


class TimeToAdvance(Answer):
    median_seconds: float | None
    p90_seconds: float | None
    advances: int


class FunnelStage(Answer):
    stage: str
    next_stage: str | None
    entered: int
    advanced: int
    to_next: int
    skipped_next: int
    restarted: int
    still_in: int
    passed_over: int = Field(description="stays skipped over by an advance past them: never counted as entered")
    conversion: float | None
    time_to_advance: TimeToAdvance


class FunnelOut(Answer):
    journey: str
    scope: str
    stages: list[FunnelStage]
    window: WindowOut


class Stays(Answer):
    stays: int
    p50_seconds: float | None = None
    p75_seconds: float | None = None
    p90_seconds: float | None = None


class StageTimes(Answer):
    stage: str
    terminal: bool = Field(description="a journey's last stage: its current stays are outcomes (since), never stuck")
    ended: Stays
    current: Stays


class TimeInStageOut(Answer):
    journey: str
    stages: list[StageTimes]


class AlignmentCell(Answer):
    row: str | None
    column: str | None
    instances: int
    with_defects: int
    alignment: str = Field(description="aligned, <columns>_ahead or <columns>_behind")
    segment: str | None = Field(None, description="the /segments query of the cell's instances")


class AlignmentOut(Answer):
    rows: str
    columns: str
    scope: str
    row_stages: list[str | None]
    column_stages: list[str | None]
    cells: list[AlignmentCell]


class Credit(Answer):
    name: str
    credit: float


class AttributionOut(Answer):
    journey: str
    stage: str
    model: str
    advances: int
    unattributed: int
    campaigns: list[Credit]
    channels: list[Credit]
    window: WindowOut


class StageCost(Answer):
    advances: float
    cost_per_advance: Money | None = None


class CostRow(Answer):
    campaign: str | None = None  # per campaign, or
    channel: str | None = None  # per channel
    leads: int
    converted: int
    customers: int
    conversion_rate: float | None
    lead_to_customer_rate: float | None
    stages: dict[str, StageCost]
    spend: Money | None = None  # per campaign only: spend is recorded per campaign
    cost_per_lead: Money | None = None


class CostOut(Answer):
    journey: str
    model: str
    window: WindowOut
    campaigns: list[CostRow]
    channels: list[CostRow]


# -- timelines ---------------------------------------------------------------------------


class TimelineTouchpoint(Answer):
    touchpoint_id: str
    type: str
    channel: str | None
    campaign: str | None
    occurred_at: datetime
    source: str | None


class TimelineTransition(Answer):
    journey: str
    from_stage: str | None
    to_stage: str | None
    skipped: list[str]
    restart: bool
    at: datetime
    touchpoint_id: str


class TimelineOut(Answer):
    scope: str
    journeys: list[str]
    touchpoint_count: int
    touchpoints: list[TimelineTouchpoint]
    transitions: list[TimelineTransition]


class InstanceTimelineOut(TimelineOut):
    id: str


class CustomerTimelineOut(TimelineOut):
    customer_id: str
    memberships: list[MembershipOut]
    recommendation: RecommendationOut | None


# -- audit and playbook ------------------------------------------------------------------


class VerificationOut(Answer):
    ok: bool
    events: int
    records: int
    first_problem: str | None
    problems: list[str] = Field(description="the first 100")
    problem_count: int
    checkpoint: Checkpoint | None
    unsealed: int = Field(description="events after the latest checkpoint")


class PlaybookOut(BaseModel):
    """The playbook as loaded (journeys/playbook.py's model), with its version and fingerprints."""

    model_config = ConfigDict(extra="allow")
    version: int | None
    fingerprint: str
    read_models_derived_under: str | None
    name: str
    journeys: dict[str, Any]

