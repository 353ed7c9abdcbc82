"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from journeys.customer import Outcome
from journeys.playbook import Journey, Message, Playbook, Scope
from journeys.recommend import Membership, Recommendation
from journeys.rules import Kind
from journeys.stages import Stages, Transition
from projections.picture import Whole


class FieldError(BaseModel):
    field: str
    reason: str


class TouchpointResult(BaseModel):
    outcome: Outcome
    touchpoint_id: str | None = None
    customer_id: str | None = None
    index: int | None = None
    known_type: bool | None = None
    detail: str | None = None
    errors: list[FieldError] = []
    position: int | None = None


class BatchOut(BaseModel):
    results: list[TouchpointResult]
    counts: dict[Outcome, int]
    position: int | None = None


class CauseOut(BaseModel):
    touchpoint_id: str
    type: str


class CriterionOut(BaseModel):
    name: str
    since: datetime
    touchpoint_id: str


class StageOut(BaseModel):
    journey: str
    title: str
    stage: str | None
    since: datetime | None
    cause: CauseOut | None
    criteria: list[CriterionOut] | None = Field(
        None, description="for journeys with required or expected criteria: those confirmed since the last restart"
    )
    defects: list[str] = Field(default_factory=list, description="process defects since the last restart")

    @classmethod
    def of(cls, journey: str, stages: Stages, playbook: Playbook) -> StageOut:
        position = stages[journey]
        cause = (
            CauseOut(touchpoint_id=position.touchpoint_id, type=position.touchpoint_type or "")
            if position.touchpoint_id
            else None
        )
        model = playbook.journeys[journey]
        return cls(
            journey=journey,
            title=model.title,
            stage=position.stage,
            since=position.since,
            cause=cause,
            criteria=[CriterionOut(**c.__dict__) for c in stages.met.get(journey, ())] if model.qualification else None,
            defects=list(stages.defects.get(journey, ())),
        )

    @classmethod
    def all_of(cls, stages: Stages, playbook: Playbook) -> dict[str, StageOut]:
        # A journey this process's playbook does not know (read models a newer playbook derived,
        # this process not restarted yet) is left out rather than misread.
        return {j: cls.of(j, stages, playbook) for j in stages.positions if j in playbook.journeys}


class PlaybookRef(BaseModel):
    name: str
    version: int | None = Field(description="the version this store gave the playbook (none: not recorded)")
    fingerprint: str | None = Field(description="hash of the playbook's content (none: derived before versions were kept)")


class RecommendationOut(BaseModel):
    """The next message and why: the rule that chose it, what it read, what was held back."""

    message: Message | None = Field(description="none: no rule applies, or the chosen rule's messages were all sent")
    rule: str | None = Field(description="the playbook rule that chose it")
    kind: Kind | None = Field(description="marketing (needs consent) or service")
    channel: str | None
    matched: list[str] = Field(description="the stages the rule read, e.g. 'complaints: case C-10 at Receipt'")
    suppressed: list[str] = Field(description="eligible marketing rules the customer's consent held back, and why")
    held_back: list[str] = Field(description="later eligible rules the chosen one held back")
    reason: str = Field(description="all of it in one sentence")

    @classmethod
    def of(cls, r: Recommendation) -> RecommendationOut:
        return cls(
            message=r.message, rule=r.rule, kind=r.kind, channel=r.channel, matched=list(r.matched),
            suppressed=list(r.suppressed), held_back=list(r.held_back), reason=r.reason,
        )


class MembershipOut(BaseModel):
    """An account, deal or case the customer is in."""

    scope: Scope
    id: str
    buying_role: str | None = Field(description="the customer's latest role in its buying centre")
    journeys: dict[str, StageOut]

    @classmethod
    def of(cls, m: Membership, playbook: Playbook) -> MembershipOut:
        return cls(scope=m.scope, id=m.id, buying_role=m.buying_role, journeys=StageOut.all_of(m.stages, playbook))


class StagesOut(BaseModel):
    customer_id: str
    record_id: str = Field(description="our id of the customer's record (a new one after an erasure)")
    as_of: datetime | None = None
    buyer: StageOut
    seller: StageOut
    awareness: StageOut
    journeys: dict[str, StageOut] = Field(description="every journey the playbook keeps per customer")
    memberships: list[MembershipOut] = Field(description="the accounts, deals and cases the customer is in")
    recommendation: RecommendationOut
    next_message: Message | None = Field(description="the recommendation's message")
    playbook: PlaybookRef = Field(description="the playbook that derived these stages")
    position: int

    @classmethod
    def of(
        cls,
        customer_id: str,
        record_id: str,
        whole: Whole,
        playbook: Playbook,
        position: int,
        derived_by: PlaybookRef,
        as_of: datetime | None = None,
    ) -> StagesOut:
        out = StageOut.all_of(whole.picture.stages, playbook)
        return cls(
            customer_id=customer_id,
            record_id=record_id,
            as_of=as_of,
            memberships=[MembershipOut.of(m, playbook) for m in whole.picture.memberships],
            recommendation=RecommendationOut.of(whole.recommendation),
            next_message=whole.recommendation.message,
            position=position,
            playbook=derived_by,
            journeys=out,
            **{j.value: out[j.value] for j in Journey},
        )


class TouchpointOut(BaseModel):
    touchpoint_id: str
    type: str
    channel: str
    occurred_at: datetime
    recorded_at: datetime
    source: str
    actor: str | None = Field(description="'erased' once the customer was erased")
    campaign: str | None
    deal_id: str | None
    properties: dict[str, Any] | Literal["erased"]


class TransitionOut(BaseModel):
    journey: str
    from_stage: str | None
    to_stage: str | None
    skipped: list[str]
    restart: bool
    at: datetime
    touchpoint_id: str
    touchpoint_type: str
    defects: list[str] = Field(default_factory=list, description="stages skipped or passed without their required or expected criteria")
    playbook: str | None = Field(None, description=(
        "fingerprint of the playbook that derived it (none: derived here and now, or before playbooks were versioned)"))

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls(**{**t.__dict__, "skipped": list(t.skipped)})


class RevisionOut(BaseModel):
    """A change to what an instance's past looked like, kept so the history never silently shifts."""

    scope: Scope
    subject: str = Field(description="the record id (customer scope) or the deal, account or case id")
    kind: Literal["late_touchpoint", "reclassified"]
    reason: str
    recorded_at: datetime = Field(description="when the change was made")
    cause_touchpoint_id: str | None = Field(description="the late touchpoint that caused it")
    cause_record_id: str | None
    playbook: str | None = Field(description="fingerprint of the playbook the new history was derived under")
    before: dict[str, str | None] = Field(description="per journey that moved: its stage before")
    after: dict[str, str | None] = Field(description="per journey that moved: its stage after")
    removed: list[TransitionOut] = Field(description="transitions the history no longer has")
    added: list[TransitionOut] = Field(description="transitions it has since")


class HistoryOut(BaseModel):
    customer_id: str = Field(description="the customer key, or 'erased'")
    record_id: str
    erased_at: datetime | None = None
    touchpoints: list[TouchpointOut] = Field(description="a page, in occurred order")
    transitions: list[TransitionOut] = Field(description="those the page's touchpoints caused")
    next_cursor: str | None = Field(None, description="give as `after` for the next page; none on the last")
    revisions: list[RevisionOut] = Field(default_factory=list, description="how this history was revised, oldest first")
    as_of: datetime | None = None
    known_at: datetime | None = None
    position: int


class CausedOut(TransitionOut):
    scope: Scope = Field(description="customer: the contact's own journeys; deal: the deal's")


class DealTouchpointOut(TouchpointOut):
    customer_id: str = Field(description="the contact's customer key, or 'erased'")
    record_id: str
    transitions: list[CausedOut]


class JourneySummaryOut(BaseModel):
    scope: Scope
    furthest_stage: str | None
    restarted: bool


class DealContactOut(BaseModel):
    customer_id: str = Field(description="the customer key, or 'erased'")
    record_id: str
    touchpoints: int


class DealSummaryOut(BaseModel):
    touchpoint_count: int
    first_touch: datetime | None
    last_touch: datetime | None
    contacts: list[DealContactOut]
    journeys: dict[str, JourneySummaryOut] = Field(
        description="per journey the deal's touchpoints moved: the furthest stage reached, and whether it restarted"
    )


class DealHistoryOut(BaseModel):
    deal_id: str
    as_of: datetime | None = None
    known_at: datetime | None = None
    summary: DealSummaryOut
    touchpoints: list[DealTouchpointOut] = Field(description="a page, in occurred order, across all contacts")
    next_cursor: str | None = None
    revisions: list[RevisionOut] = Field(
        default_factory=list, description="how the deal's and its contacts' histories were revised, oldest first")
    position: int


class ErasureOut(BaseModel):
    record_id: str = Field(description="the erased record, by which an auditor can still read its anonymous history")
    linked_records: list[str] = Field(
        default_factory=list,
        description="the person's other records (ids linked by identify or alias), erased in the same operation",
    )
    erased_by: str
    detail: str


class ContactOut(BaseModel):
    customer_id: str = Field(description="the customer key, or 'erased'")
    record_id: str
    buying_role: str | None = Field(description="the latest role a touchpoint gave the contact here")
    touchpoints: int = Field(description="the contact's touchpoints carrying this key")
    stages: dict[str, str | None] = Field(description="the contact's own stages in the customer journeys")


class InstanceOut(BaseModel):
    id: str
    scope: Scope
    journeys: dict[str, StageOut]
    touchpoint_count: int
    contacts: list[ContactOut]
    missing_roles: list[str] | None = Field(None, description="accounts and deals: buying-centre roles no contact has yet")
    warnings: list[str] = Field(default_factory=list)
    transitions: list[TransitionOut]
    position: int


class SegmentMember(BaseModel):
    customer_id: str
    buyer: str | None
    seller: str | None
    awareness: str | None
    stages: dict[str, str | None] = Field(description="the customer's stage in every customer journey")
    touchpoint_count: int
    recommendation: RecommendationOut = Field(description="the next message and why")


class InstanceMember(BaseModel):
    id: str = Field(description="the account, deal or case id")
    stages: dict[str, str | None]
    touchpoint_count: int


class SegmentOut(BaseModel):
    scope: Scope = Scope.customer
    customers: list[SegmentMember] = Field(description="the members, when the journeys asked about are kept per customer")
    instances: list[InstanceMember] = Field(
        default_factory=list, description="the members, when they are kept per account, deal or case"
    )
    next_cursor: str | None
    stuck_after_seconds: float | None = Field(
        None, description="with stuck=true: the stage's p90 of ended stays, which members' current stays exceed"
    )


class ComponentOut(BaseModel):
    name: str
    ok: bool
    detail: str | None = None


class HealthOut(BaseModel):
    status: str = Field(description="ok, degraded (a component is failing) or unavailable (no database)")
    database: str
    components: list[ComponentOut] = Field(description="each component; on 503, the failing ones say why")
    projection_position: int
    log_position: int
    projection_lag: int = Field(description="events written but not yet in the read model")
    projection_lag_seconds: float = Field(description="age of the oldest event not yet in the read model")
    projection_error: str | None
