"""Customers by stage: the segments marketing sends to."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import READERS, allow
from api.deps import SystemDep
from api.errors import BadQueryError
from api.schemas import SegmentMember, SegmentOut
from journeys.playbook import Journey, Playbook
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
    cursor: Annotated[str | None, Query(max_length=1000, description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SegmentOut:
    """Customers in the given stages, a page at a time."""
    asked = {Journey.awareness: awareness, Journey.buyer: buyer, Journey.seller: seller}
    filters = {
        journey: _stage(system.playbook, journey, stage)
        for journey, stage in asked.items()
        if stage is not None
    }
    rows = system.view.segment(filters, _decode(cursor), limit)
    keys = system.personal.customer_keys(rows)
    members = [
        SegmentMember(
            customer_id=keys[r["record_id"]],
            touchpoint_count=r["touchpoint_count"],
            **{j.value: r["stages"][j].stage for j in Journey},
        )
        for r in rows
        if r["record_id"] in keys  # an erasure the view has not caught up with yet
    ]
    next_cursor = _encode(rows[-1]["record_id"]) if len(rows) == limit else None
    return SegmentOut(customers=members, next_cursor=next_cursor)


@router.get("/summary")
def summary(system: SystemDep) -> dict[Journey, dict[str, int]]:
    """How many customers are in each stage of each journey."""
    counts = system.view.summary()
    out: dict[Journey, dict[str, int]] = {}
    for journey in Journey:
        model = system.playbook.journeys[journey]
        found = counts.get(journey, {})
        names = ([] if model.initial else [None]) + list(model.stages)
        out[journey] = {(n or NOT_STARTED): found.get(n, 0) for n in names}
        for stage, n in found.items():  # stages a changed playbook no longer has
            out[journey].setdefault(stage or NOT_STARTED, n)
    return out


def _stage(playbook: Playbook, journey: Journey, stage: str) -> str | None:
    if stage == NOT_STARTED:
        return None
    stages = playbook.journeys[journey].stages
    if stage not in stages:
        raise BadQueryError(journey.value, f"{stage!r} is not a stage of the {journey.value} journey; use one of {stages} or '{NOT_STARTED}'")
    return stage


def _encode(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).decode()


def _decode(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return check_text(base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQueryError("cursor", "not a cursor this API issued") from None
