"""Recording what an intake route received: items validated one by one, the valid ones stored
in one transaction, a result for each (the invalid ones say which field is wrong and why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api.schemas import BatchOut, FieldError, TouchpointResult
from journeys import metrics
from journeys.application import Result
from journeys.customer import IdentityLink, Outcome
from journeys.touchpoint import Touchpoint, check_text
from projections.system import System

STATUS = {Outcome.recorded: 201, Outcome.duplicate: 200, Outcome.conflict: 409, Outcome.invalid: 422}


@dataclass
class Rejected:
    """An item that is not a touchpoint, and why."""

    errors: list[FieldError]
    touchpoint_id: str | None = None
    customer_id: str | None = None
    detail: str = "invalid touchpoint; nothing stored for this item"


def field_errors(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(field=".".join(str(p) for p in e["loc"]) or "(body)", reason=e["msg"])
        for e in error.errors()
    ]


def validated(fields: Any) -> Touchpoint | Rejected:
    """The touchpoint the fields make, or what is wrong with them."""
    if not isinstance(fields, dict):
        return Rejected([FieldError(field="(item)", reason="must be a JSON object (a touchpoint)")])
    try:
        return Touchpoint.model_validate(fields)
    except ValidationError as error:
        return Rejected(field_errors(error), echoable(fields.get("touchpoint_id")), echoable(fields.get("customer_id")))


@dataclass
class Stored:
    batch: BatchOut
    links: list[Result]  # of the identity links, in the order given


def record_items(system: System, items: list[Touchpoint | Rejected], intake: str,
                 links: Sequence[IdentityLink] = ()) -> Stored:
    """Store the valid items (and the links) in one transaction; a result per item, in the order
    received."""
    valid = [(i, item) for i, item in enumerate(items) if isinstance(item, Touchpoint)]
    results: list[TouchpointResult | None] = [None] * len(items)
    for index, item in enumerate(items):
        if isinstance(item, Rejected):
            results[index] = TouchpointResult(
                outcome=Outcome.invalid, touchpoint_id=item.touchpoint_id, customer_id=item.customer_id,
                index=index, detail=item.detail, errors=item.errors,
            )
            metrics.TOUCHPOINTS.labels(Outcome.invalid.value, intake).inc()
    recorded = system.record([t for _, t in valid], intake=intake, links=links) if valid or links else None
    position = recorded.position if recorded else None
    for (index, _), result in zip(valid, recorded.results if recorded else [], strict=True):
        results[index] = result_of(result, position, index)
    final = [r for r in results if r is not None]
    counts = {o: sum(r.outcome is o for r in final) for o in Outcome}
    return Stored(BatchOut(results=final, counts=counts, position=position), recorded.links if recorded else [])


def result_of(result: Result, position: int | None, index: int | None = None) -> TouchpointResult:
    detail = result.error
    if result.outcome is not Outcome.conflict and not result.known_type:
        detail = "touchpoint type is not in the playbook: stored, but it moves no stage"
    return TouchpointResult(
        outcome=result.outcome, touchpoint_id=result.touchpoint_id, customer_id=result.customer_id,
        index=index, known_type=result.known_type, detail=detail, position=position,
    )


def echoable(value: Any) -> str | None:
    """A value the answer may repeat: text any JSON encoder can write (no NUL, no lone surrogate)."""
    if not isinstance(value, str):
        return None
    try:
        return check_text(value)
    except ValueError:
        return None
