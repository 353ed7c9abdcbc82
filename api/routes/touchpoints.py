"""Publishing touchpoints over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import ValidationError

from api.auth import allow
from api.deps import SystemDep
from api.keys import Role
from api.schemas import BatchOut, FieldError, TouchpointResult
from journeys import metrics
from journeys.application import Result
from journeys.customer import Outcome
from journeys.touchpoint import Touchpoint

router = APIRouter(
    prefix="/touchpoints", tags=["touchpoints"], dependencies=[allow(Role.publisher)]
)

MAX_BATCH = 1000
STATUS = {Outcome.recorded: 201, Outcome.duplicate: 200, Outcome.conflict: 409}


def _result(result: Result, position: int | None, index: int | None = None) -> TouchpointResult:
    detail = result.error
    if result.outcome is not Outcome.conflict and not result.known_type:
        detail = "touchpoint type is not in the playbook: stored, but it moves no stage"
    return TouchpointResult(
        outcome=result.outcome,
        touchpoint_id=result.touchpoint_id,
        customer_id=result.customer_id,
        index=index,
        known_type=result.known_type,
        detail=detail,
        position=position,
    )


def field_errors(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(field=".".join(str(p) for p in e["loc"]) or "(body)", reason=e["msg"])
        for e in error.errors()
    ]


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
    return _result(result, recorded.position)


@router.post("/batch", response_model=BatchOut)
def record_batch(
    items: Annotated[list[dict[str, Any]], Body(min_length=1, max_length=MAX_BATCH)],
    system: SystemDep,
) -> BatchOut:
    """Record up to 1,000 touchpoints in one transaction; a result for each item."""
    valid: list[tuple[int, Touchpoint]] = []
    results: list[TouchpointResult | None] = [None] * len(items)
    for index, item in enumerate(items):
        try:
            valid.append((index, Touchpoint.model_validate(item)))
        except ValidationError as error:
            results[index] = TouchpointResult(
                outcome=Outcome.invalid,
                touchpoint_id=_str_or_none(item.get("touchpoint_id")),
                customer_id=_str_or_none(item.get("customer_id")),
                index=index,
                detail="invalid touchpoint; nothing stored for this item",
                errors=field_errors(error),
            )
            metrics.TOUCHPOINTS.labels(Outcome.invalid.value, "http").inc()
    recorded = system.record([t for _, t in valid])
    for (index, _), result in zip(valid, recorded.results, strict=True):
        results[index] = _result(result, recorded.position, index)
    final = [r for r in results if r is not None]
    counts = {o: sum(r.outcome is o for r in final) for o in Outcome}
    return BatchOut(results=final, counts=counts, position=recorded.position)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
