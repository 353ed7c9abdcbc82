"""Instances by stage: the segments marketing sends to, for every journey and scope."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.auth import READERS, allow
from api.deps import SystemDep, WholeNumber
from api.errors import BadQueryError
from api.schemas import InstanceMember, RecommendationOut, SegmentMember, SegmentOut
from journeys.playbook import Journey, Playbook, Scope
from journeys.touchpoint import check_text
from projections.picture import wholes
from projections.segment_export import csv_lines, export_columns, segment_rows

router = APIRouter(prefix="/segments", tags=["segments"], dependencies=[allow(*READERS)])

NOT_STARTED = "not_started"
StageQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, description=f"a stage of this journey, or '{NOT_STARTED}'")
]


@dataclass(frozen=True)
class Asked:
    """A segment query, checked: the stage per journey, the scope, and the stuck bound."""

    filters: dict[str, str | None]
    scope: Scope
    since_before: datetime | None = None
    stuck_after: float | None = None


def asked(
    system: SystemDep,
    awareness: StageQuery = None,
    buyer: StageQuery = None,
    seller: StageQuery = None,
    journey: Annotated[str | None, Query(min_length=1, max_length=50, description="any journey of the playbook")] = None,
    stage: StageQuery = None,
    stuck: Annotated[bool, Query(description="only those whose current stay exceeds the stage's p90 of ended stays")] = False,
) -> Asked:
    named = {Journey.awareness.value: awareness, Journey.buyer.value: buyer, Journey.seller.value: seller}
    if (journey is None) != (stage is None):
        raise BadQueryError("journey" if journey is None else "stage", "journey and stage go together")
    if journey is not None:
        if journey in named and named[journey] is not None:
            raise BadQueryError("journey", f"{journey} is asked for twice")
        named[journey] = stage
    filters = {j: _stage(system.playbook, j, s) for j, s in named.items() if s is not None}
    scopes = {system.playbook.journeys[j].scope for j in filters} or {Scope.customer}
    if len(scopes) > 1:
        raise BadQueryError("journey", f"these journeys are kept for different scopes: {sorted(s.value for s in scopes)}")
    if not stuck:
        return Asked(filters, scopes.pop())
    if len(filters) != 1 or None in filters.values():
        raise BadQueryError("stuck", "stuck=true needs exactly one journey and one of its stages")
    (stuck_journey, stuck_stage), = filters.items()
    assert stuck_stage is not None  # checked just above
    model = system.playbook.journeys[stuck_journey]
    if model.is_terminal(stuck_stage):
        raise BadQueryError("stuck", f"{stuck_stage} is where the {model.title} ends: a stay there is an outcome, "
                            "so no one is stuck in it")
    threshold = system.analytics.stuck_after(stuck_journey, stuck_stage)
    if threshold is None:
        raise BadQueryError("stuck", f"no stay in {stuck_stage} has ended yet: there is no p90 to compare with")
    return Asked(filters, scopes.pop(), datetime.now(UTC) - timedelta(seconds=threshold), threshold)


AskedDep = Annotated[Asked, Depends(asked)]


@router.get("", response_model=SegmentOut)
def segment(
    system: SystemDep,
    query: AskedDep,
    cursor: Annotated[str | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000), WholeNumber] = 100,
) -> SegmentOut:
    """Customers (or accounts, deals, cases) in the given stages, a page at a time."""
    rows = system.view.segment(query.filters, _decode(cursor), limit, query.scope, query.since_before)
    next_cursor = _encode(rows[-1]["subject"]) if len(rows) == limit else None
    if query.scope is not Scope.customer:
        instances = [
            InstanceMember(id=r["subject"], touchpoint_count=r["touchpoint_count"],
                           stages={j: p.stage for j, p in r["stages"].positions.items()})
            for r in rows
        ]
        return SegmentOut(scope=query.scope, customers=[], instances=instances, next_cursor=next_cursor,
                          stuck_after_seconds=query.stuck_after)
    keys = system.personal.customer_keys(rows)
    rows = [r for r in rows if r["record_id"] in keys]  # an erasure the view has not caught up with yet
    found = wholes(system, {r["record_id"]: r["stages"] for r in rows})
    members = [
        SegmentMember(
            customer_id=keys[r["record_id"]],
            touchpoint_count=r["touchpoint_count"],
            stages={j: p.stage for j, p in r["stages"].positions.items()},
            recommendation=RecommendationOut.of(found[r["record_id"]].recommendation),
            **{j.value: r["stages"][j.value].stage for j in Journey},
        )
        for r in rows
    ]
    return SegmentOut(customers=members, next_cursor=next_cursor, stuck_after_seconds=query.stuck_after)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}, "description": "the whole segment"}},
)
def export(
    system: SystemDep,
    query: AskedDep,
    format: Annotated[Literal["csv", "jsonl"], Query(description="CSV with a header row, or JSON Lines")] = "csv",
) -> StreamingResponse:
    """The whole segment, streamed a page at a time (constant memory): each member's id, stages
    and, for customers, the id of the next message to send."""
    rows = segment_rows(system, query.filters, query.scope, query.since_before)
    columns = export_columns(system.playbook, query.scope)
    body = csv_lines(columns, rows) if format == "csv" else (json.dumps(row) + "\n" for row in rows)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"segment.{format}"
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/summary")
def summary(system: SystemDep) -> dict[str, dict[str, int]]:
    """How many customers (accounts, deals, cases) are in each stage of each journey."""
    counts = system.view.summary()
    out: dict[str, dict[str, int]] = {}
    for journey, model in system.playbook.journeys.items():
        found = counts.get(journey, {})
        names = ([] if model.initial else [None]) + list(model.stages)
        out[journey] = {(n or NOT_STARTED): found.get(n, 0) for n in names}
        for stage, n in found.items():  # stages a changed playbook no longer has
            out[journey].setdefault(stage or NOT_STARTED, n)
    return out


def _stage(playbook: Playbook, journey: str, stage: str) -> str | None:
    model = playbook.journeys.get(journey)
    if model is None:
        raise BadQueryError("journey", f"is not a journey of the playbook; use one of {list(playbook.journeys)}")
    if stage == NOT_STARTED:
        return None
    if stage not in model.stages:
        raise BadQueryError(journey, f"is not a stage of the {journey} journey; use one of {model.stages} or '{NOT_STARTED}'")
    return stage


def _encode(subject: str) -> str:
    return base64.urlsafe_b64encode(subject.encode()).decode()


def _decode(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return check_text(base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQueryError("cursor", "not a cursor this API issued") from None
