"""CloudEvents over HTTP (binary and structured mode, single and batch) at POST /cloudevents.

The event's data is the touchpoint (see journeys/cloudevent.py). A single event is
answered like POST /touchpoints (201 recorded, 200 duplicate, 409 conflict, 422
invalid); a batch (`application/cloudevents-batch+json`, a JSON array of structured
events) like POST /touchpoints/batch: a result for each event, the valid ones stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import allow
from api.deps import SystemDep
from api.errors import BadBodyError
from api.intake import STATUS, Rejected, record_items, validated
from api.keys import Role
from api.routes.touchpoints import MAX_BATCH
from api.schemas import BatchOut, FieldError, TouchpointResult
from journeys import cloudevent
from journeys.touchpoint import NotJsonError, Touchpoint, read_json

router = APIRouter(tags=["touchpoints"], dependencies=[allow(Role.publisher)])

INTAKE = "cloudevents"


@router.post(
    "/cloudevents",
    status_code=201,
    response_model=TouchpointResult | BatchOut,
    responses={
        200: {"description": "a duplicate single event, or a batch (a result per event)"},
        409: {"description": "conflict"}, 415: {"description": "not a CloudEvent"},
        422: {"description": "the event's data is not a valid touchpoint"},
    },
    openapi_extra={"parameters": [
        {"name": f"ce-{name}", "in": "header", "required": False, "schema": {"type": "string"},
         "description": f"binary mode: the event's {name}" + (" (required in binary mode)" if need else "")}
        for name, need in (("specversion", True), ("id", True), ("source", True), ("type", True),
                           ("subject", False), ("time", False))
    ], "requestBody": {"required": True, "content": {
        cloudevent.STRUCTURED: {"schema": {"type": "object"}},
        cloudevent.BATCH: {"schema": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
            "description": "a structured event; an item that is not one is reported in its result, the rest stored"}}},
        "application/json": {"schema": {"type": "object", "description": "binary mode: the touchpoint, ce-* headers"}},
    }}},
)
async def receive(request: Request, system: SystemDep) -> JSONResponse:
    """Record a CloudEvent (binary or structured mode) or a batch of them."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    kind = cloudevent.media_type(headers.get("content-type"))
    if kind == cloudevent.BATCH:
        envelopes = _parsed(body)
        if not isinstance(envelopes, list) or not 1 <= len(envelopes) <= MAX_BATCH:
            raise BadBodyError(f"a CloudEvents batch is a JSON array of 1 to {MAX_BATCH} events")
        items = [_item(cloudevent.structured, envelope) for envelope in envelopes]
        out = (await run_in_threadpool(record_items, system, items, INTAKE)).batch
        return JSONResponse(out.model_dump(mode="json"))
    if "ce-specversion" in headers:
        item = _item(cloudevent.binary, headers, body, "ce-")
    elif kind == cloudevent.STRUCTURED:
        item = _item(cloudevent.structured, _parsed(body))
    else:
        return JSONResponse(status_code=415, content={"detail": (
            "not a CloudEvent: send binary mode (ce-specversion and the other ce-* headers, the touchpoint "
            f"as the body), or structured mode ({cloudevent.STRUCTURED}), or a batch ({cloudevent.BATCH})"
        )})
    result = (await run_in_threadpool(record_items, system, [item], INTAKE)).batch.results[0]
    return JSONResponse(status_code=STATUS[result.outcome], content=result.model_dump(mode="json"))


def _parsed(body: bytes) -> Any:
    try:
        return read_json(body, "the body")
    except NotJsonError as error:
        raise BadBodyError(str(error)) from None


def _item(read: Callable[..., dict[str, Any]], *frame: Any) -> Touchpoint | Rejected:
    """The touchpoint an event carries (`read` takes it out of the frame), or why it carries none."""
    try:
        return validated(read(*frame))
    except cloudevent.CloudEventError as error:
        return Rejected([FieldError(field="(event)", reason=str(error))], detail="not a CloudEvent carrying a touchpoint")
