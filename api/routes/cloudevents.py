"""CloudEvents over HTTP (binary and structured mode, single and batch) at POST /cloudevents.

The event's data is the touchpoint (see journeys/intake/cloudevent.py). A single event is
answered like POST /touchpoints (201 recorded, 200 duplicate, 409 conflict, 422
invalid); a batch (`application/cloudevents-batch+json`, a JSON array of structured
events) like POST /touchpoints/batch: a result for each event, the valid ones stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import allow
from api.deps import SystemDep
from api.errors import BadBodyError
from api.intake import STATUS, Rejected, record_items, validated
from api.openapi import inlined
from api.routes.touchpoints import MAX_BATCH
from api.schemas import BatchOut, FieldError, TouchpointResult
from journeys.intake import cloudevent
from journeys.storage.api_keys import Role
from journeys.touchpoint import NotJsonError, Touchpoint, read_json

router = APIRouter(tags=["touchpoints"], dependencies=[allow(Role.publisher)])

INTAKE = "cloudevents"
TOUCHPOINT = inlined(Touchpoint.model_json_schema())
STRUCTURED_EVENT: dict[str, Any] = {
    "type": "object", "required": ["specversion", "data"], "not": {"required": ["data_base64"]},  # data as JSON here
    "description": "structured mode: the event, its data the touchpoint (id, time, source and subject stand in for "
    "touchpoint_id, occurred_at, source and customer_id where the data leaves them out)",
    "properties": {
        "specversion": {"type": "string", "enum": list(cloudevent.SPEC_VERSIONS)},
        "id": {"type": "string"}, "source": {"type": "string"}, "type": {"type": "string"},
        "subject": {"type": "string"}, "time": {"type": "string"},
        "datacontenttype": {"type": "string", "enum": ["application/json"]},
        "data": TOUCHPOINT,
    },
}


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
        {"name": f"ce-{name}", "in": "header", "required": False, "schema": schema,
         "description": f"binary mode: the event's {name}" + (" (required in binary mode)" if need else "")}
        for name, need, schema in (
            ("specversion", True, {"type": "string", "enum": list(cloudevent.SPEC_VERSIONS)}),
            ("id", True, {"type": "string"}), ("source", True, {"type": "string"}), ("type", True, {"type": "string"}),
            ("subject", False, {"type": "string"}), ("time", False, {"type": "string"}))
    ], "requestBody": {"required": True, "content": {
        cloudevent.STRUCTURED: {"schema": STRUCTURED_EVENT},
        cloudevent.BATCH: {"schema": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
            **STRUCTURED_EVENT, "description": "a structured event; one that cannot be recorded is reported in its result, "
            "the rest stored"}}},
        "application/json": {"schema": {**TOUCHPOINT, "description": "binary mode: the touchpoint, with the ce-* headers"}},
    }}},
)
async def receive(request: Request, system: SystemDep) -> JSONResponse:
    """Record a CloudEvent (binary or structured mode) or a batch of them."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    kind = cloudevent.media_type(headers.get("content-type"))
    if kind == cloudevent.BATCH:
        try:
            _header_version(headers)
        except cloudevent.CloudEventError as error:
            raise BadBodyError(f"the ce-specversion header: {error}") from None
        envelopes = _parsed(body)
        if not isinstance(envelopes, list) or not 1 <= len(envelopes) <= MAX_BATCH:
            raise BadBodyError(f"a CloudEvents batch is a JSON array of 1 to {MAX_BATCH} events")
        items = [_item(cloudevent.structured, envelope) for envelope in envelopes]
        out = (await run_in_threadpool(record_items, system, items, INTAKE)).batch
        return JSONResponse(out.model_dump(mode="json"))
    if kind == cloudevent.STRUCTURED:  # the media type decides the mode (HTTP binding 3.1), whatever ce-* headers come along
        item = _item(_structured, headers, _parsed(body))
    elif "ce-specversion" in headers:
        item = _item(cloudevent.binary, headers, body, "ce-")
    else:
        return JSONResponse(status_code=415, content={"detail": (
            "not a CloudEvent: send binary mode (ce-specversion and the other ce-* headers, the touchpoint "
            f"as the body), or structured mode ({cloudevent.STRUCTURED}), or a batch ({cloudevent.BATCH})"
        )})
    result = (await run_in_threadpool(record_items, system, [item], INTAKE)).batch.results[0]
    return JSONResponse(status_code=STATUS[result.outcome], content=result.model_dump(mode="json"))


def _header_version(headers: dict[str, str]) -> None:
    """A ce-specversion header beside a structured event or a batch must still name a version this reads."""
    if "ce-specversion" in headers:
        cloudevent.check_version(unquote(headers["ce-specversion"]))


def _structured(headers: dict[str, str], envelope: Any) -> dict[str, Any]:
    _header_version(headers)
    return cloudevent.structured(envelope)


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
