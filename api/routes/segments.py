"""Instances by stage: the segments marketing sends to, for every journey and scope."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import READERS, allow
from api.deps import SystemDep
from api.errors import BadQueryError
from api.schemas import InstanceMember, SegmentMember, SegmentOut
from journeys.playbook import Journey, Playbook, Scope
from journeys.touchpoint import check_text

router = APIRouter(prefix="/segments", tags=["segments"], dependencies=[allow(*READERS)])

NOT_STARTED = "not_started"
StageQuery = Annotated[
    str | None, Query(min_length=1, max_length=200, description=f"a stage of this journey, or '{NOT_STARTED}'")
]


@router.get("", response_model=SegmentOut)
def segment(
    system: SystemDep,
    awareness: StageQuery = None,
    buyer: StageQuery = None,
    seller: StageQuery = None,
    journey: Annotated[str | None, Query(min_length=1, max_length=50, description="any journey of the playbook")] = None,
    stage: StageQuery = None,
    cursor: Annotated[str | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SegmentOut:
    """Customers (or accounts, deals, cases) in the given stages, a page at a time."""
    asked = {Journey.awareness.value: awareness, Journey.buyer.value: buyer, Journey.seller.value: seller}
    if (journey is None) != (stage is None):
        raise BadQueryError("journey" if journey is None else "stage", "journey and stage go together")
    if journey is not None:
        if journey in asked and asked[journey] is not None:
            raise BadQueryError("journey", f"{journey} is asked for twice")
        asked[journey] = stage
    filters = {j: _stage(system.playbook, j, s) for j, s in asked.items() if s is not None}
    scopes = {system.playbook.journeys[j].scope for j in filters} or {Scope.customer}
    if len(scopes) > 1:
        raise BadQueryError("journey", f"these journeys are kept for different scopes: {sorted(s.value for s in scopes)}")
    scope = scopes.pop()
    rows = system.view.segment(filters, _decode(cursor), limit, scope)
    next_cursor = _encode(rows[-1]["subject"]) if len(rows) == limit else None
    if scope is not Scope.customer:
        instances = [
            InstanceMember(id=r["subject"], touchpoint_count=r["touchpoint_count"],
                           stages={j: p.stage for j, p in r["stages"].positions.items()})
            for r in rows
        ]
        return SegmentOut(scope=scope, customers=[], instances=instances, next_cursor=next_cursor)
    keys = system.personal.customer_keys(rows)
    members = [
        SegmentMember(
            customer_id=keys[r["record_id"]],
            touchpoint_count=r["touchpoint_count"],
            stages={j: p.stage for j, p in r["stages"].positions.items()},
            **{j.value: r["stages"][j.value].stage for j in Journey},
        )
        for r in rows
        if r["record_id"] in keys  # an erasure the view has not caught up with yet
    ]
    return SegmentOut(customers=members, next_cursor=next_cursor)


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
        raise BadQueryError("journey", f"{journey!r} is not a journey of the playbook; use one of {list(playbook.journeys)}")
    if stage == NOT_STARTED:
        return None
    if stage not in model.stages:
        raise BadQueryError(journey, f"{stage!r} is not a stage of the {journey} journey; use one of {model.stages} or '{NOT_STARTED}'")
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
