"""Publishing touchpoints over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from api.auth import allow
from api.deps import SystemDep
from api.intake import STATUS, record_items, result_of, validated
from api.schemas import BatchOut, TouchpointResult
from journeys.storage.api_keys import Role
from journeys.touchpoint import Touchpoint

router = APIRouter(
    prefix="/touchpoints", tags=["touchpoints"], dependencies=[allow(Role.publisher)]
)

MAX_BATCH = 1000


@router.post(
    "",
    status_code=201,
    response_model=TouchpointResult,
    responses={200: {"description": "duplicate"}, 409: {"description": "conflict"}},
)
def record_touchpoint(touchpoint: Touchpoint, system: SystemDep, response: Response) -> TouchpointResult:
    """Record one touchpoint: 201 recorded, 200 duplicate, 409 conflict."""
    recorded = system.record([touchpoint])
    result = recorded.results[0]
    response.status_code = STATUS[result.outcome]
    return result_of(result, recorded.position)


@router.post("/batch", response_model=BatchOut)
def record_batch(
    items: Annotated[list[dict[str, Any]], Body(min_length=1, max_length=MAX_BATCH)],
    system: SystemDep,
) -> BatchOut:
    """Record up to 1,000 touchpoints in one transaction; a result for each item."""
    return record_items(system, [validated(item) for item in items], "http").batch
