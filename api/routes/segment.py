"""A Segment-compatible intake: POST /v1/batch and the single calls, as Segment's SDKs send them.

The write key is a publisher API key: HTTP basic auth with the key as the user name
(as the SDKs send it), a bearer token, or `writeKey` in the body. Bodies may be
gzipped (Content-Encoding: gzip); a batch may be 500 KB once inflated, a message
32 KB. A well-formed batch is answered 200 `{"success": true, ...}` with every valid
message stored and the rest reported by index; a malformed one 400, with the `code`
and `message` the SDKs log. Mapping: journeys/intake/segment.py.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import allow
from api.deps import SystemDep
from api.intake import Rejected, echoable, record_items, result_of, validated
from api.schemas import FieldError
from journeys.customer import IdentityLink, Outcome
from journeys.intake import segment
from journeys.storage.api_keys import Role
from journeys.touchpoint import TEXT_PATTERN, Channel, NotJsonError, Touchpoint, read_json
from projections.system import System

INTAKE = "segment"
MAX_MESSAGES = 2500  # 500 KB of the smallest messages the SDKs send


class BodyError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_body(request: Request) -> None:
    """Read (and inflate) the body before the key is checked, since the key may be in it.
    What is wrong with it is answered after the key is checked: no key, no details."""
    request.state.segment_body = request.state.segment_error = None
    try:
        body = _json(_inflate(await request.body(), request.headers.get("content-encoding")))
    except BodyError as error:
        request.state.segment_error = error
        return
    request.state.segment_body = body
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        request.state.write_key = body["writeKey"]


router = APIRouter(prefix="/v1", tags=["segment"], dependencies=[Depends(read_body), allow(Role.publisher)])


def _inflate(raw: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        inflated = raw
    elif encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:  # never more than the limit in memory, however well the body compresses
            inflated = inflater.decompress(raw, segment.MAX_BATCH_BYTES + 1)
        except zlib.error as error:
            raise BodyError(400, "invalid_gzip", f"the body is not valid gzip: {error}") from None
        if not inflater.eof and len(inflated) <= segment.MAX_BATCH_BYTES:
            raise BodyError(400, "invalid_gzip", "the gzip body ends early")
    else:
        raise BodyError(415, "unsupported_encoding", "this Content-Encoding is not supported; use gzip or none")
    if len(inflated) > segment.MAX_BATCH_BYTES:
        raise BodyError(413, "batch_too_large", f"the body is over {segment.MAX_BATCH_BYTES} bytes (inflated); "
                        "send smaller batches")
    return inflated


def _json(raw: bytes) -> Any:
    try:
        return read_json(raw, "the body")
    except NotJsonError as error:
        raise BodyError(400, "invalid_json", str(error)) from None


def _refused(error: BodyError) -> JSONResponse:
    return JSONResponse(status_code=error.status, content={
        "success": False, "code": error.code, "message": error.message, "detail": error.message,
    })


def _body(request: Request) -> Any:
    if request.state.segment_error is not None:
        raise request.state.segment_error
    return request.state.segment_body


TOUCHPOINT_CALLS = ("track", "page", "screen")  # the calls that record a touchpoint


def message_schema(call: str, typed: bool = False) -> dict[str, Any]:
    """A message of this call (`typed`: saying so in its `type`, as in a batch) as journeys/intake/segment.py reads it: what the
    document cannot say (a time at most 24 hours ahead, no NUL inside `properties`) is answered
    per message under `rejected`; fields it does not name are kept in the properties or ignored."""
    touchpoint = Touchpoint.model_json_schema()["properties"]
    key = {"anyOf": [touchpoint["customer_id"], {"type": "number"}]}
    optional_key = {"anyOf": [*key["anyOf"], {"type": "null"}]}
    time = {"anyOf": [touchpoint["occurred_at"], {"type": "null"}]}
    fields: dict[str, Any] = {
        "type": {"type": "string", "enum": [call]} if typed else {"type": "string"},
        "messageId": {"anyOf": [touchpoint["touchpoint_id"], {"type": "number"}],
                      "description": "the touchpoint's id: a retried message is stored once"},
        "userId": optional_key, "anonymousId": optional_key,
        "timestamp": time, "originalTimestamp": time, "sentAt": time,
    }
    required = ["messageId"] + (["type"] if typed else [])
    schema: dict[str, Any] = {
        "type": "object", "required": required, "properties": fields,
        "description": f"a Segment {call} call as the SDKs send it; what cannot be recorded is answered "
        "under `rejected` (a single call: 400) or `ignored`",
    }
    if call in TOUCHPOINT_CALLS:
        plain = {"anyOf": [{"type": "string", "maxLength": 200, "pattern": TEXT_PATTERN}, {"type": "null"}]}
        fields["properties"] = {"type": "object", "properties": {
            **{name: touchpoint[name] for name in ("deal_id", "account_id", "case_id", "buying_role", "actor")},
            "channel": {"type": "string", "enum": [c.value for c in Channel]},
            "criteria": {"type": "array", "maxItems": 20, "items": touchpoint["criteria"]["items"]},
        }}
        fields["context"] = {"type": "object", "properties": {
            "campaign": {"type": "object", "properties": {"name": plain, "medium": {"type": "string"}}},
            "library": {"type": "object", "properties": {"name": {"anyOf": [
                {"type": "string", "maxLength": 150, "pattern": TEXT_PATTERN}, {"type": "null"}]}}},
            "groupId": touchpoint["account_id"],
        }}
        fields["name"] = {"type": "string", "maxLength": 200}
        fields["event"] = {"type": "string", "maxLength": 50, "pattern": "^[^A-Za-z0-9]*[A-Za-z]",
                           "description": "the touchpoint's type (snake_case of it), or the playbook's name for it"}
        schema["anyOf"] = [{"required": [name], "properties": {name: key}} for name in ("userId", "anonymousId")]
        if call == "track":
            required.append("event")
    elif call == "alias":
        required += ["previousId", "userId"]
        fields["previousId"] = fields["userId"] = key
    return schema

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["batch"],
    "properties": {"batch": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": {
        "anyOf": [message_schema(call, typed=True) for call in segment.CALLS],
        "description": "a message as in the single calls, with its `type`; one that cannot be "
        "recorded is reported under `rejected`, the rest stored"}},
                   "sentAt": {"type": "string"}, "writeKey": {"type": "string"}},
}


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/batch", responses={400: {"description": "a malformed batch"}, 413: {"description": "over 500 KB"}},
             openapi_extra=_body_doc(BATCH_SCHEMA))
async def batch(request: Request, system: SystemDep) -> JSONResponse:
    """Segment's batch call: `{"batch": [messages], "sentAt": ...}`, each message with its `type`."""
    try:
        body = _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise BodyError(400, "invalid_batch", 'a batch is a JSON object with "batch": a list of messages')
        if not 1 <= len(body["batch"]) <= MAX_MESSAGES:
            raise BodyError(400, "invalid_batch", f"a batch holds 1 to {MAX_MESSAGES} messages")
        for field in ("sentAt", "writeKey"):
            if field in body and not isinstance(body[field], str):
                raise BodyError(400, "invalid_batch", f"{field} must be a string")
    except BodyError as error:
        return _refused(error)
    messages: list[tuple[Any, str | None]] = [(m, None) for m in body["batch"]]
    return JSONResponse(await run_in_threadpool(take, system, messages, body.get("sentAt")))


def _single(call: str) -> Any:
    async def receive(request: Request, system: SystemDep) -> JSONResponse:
        try:
            body = _body(request)
            if not isinstance(body, dict):
                raise BodyError(400, "invalid_message", "the body must be a JSON object (one message)")
        except BodyError as error:
            return _refused(error)
        report = await run_in_threadpool(take, system, [(body, call)], None)
        if report["rejected"]:
            reason = report["rejected"][0]["reason"]
            return JSONResponse(status_code=400, content={
                **report, "success": False, "code": "invalid_message", "message": reason, "detail": reason,
            })
        return JSONResponse(report)

    receive.__name__ = f"segment_{call}"
    receive.__doc__ = f"Segment's {call} call: one message."
    return receive


for _call in segment.CALLS:
    _doc = _body_doc(message_schema(_call))
    router.add_api_route(f"/{_call}", _single(_call), methods=["POST"], responses={400: {"description": "a malformed message"}},
                         openapi_extra=_doc)
    # The browser SDK (analytics.js) posts to the call's first letter: /v1/t, /v1/p, /v1/i, ...
    router.add_api_route(f"/{_call[0]}", _single(_call), methods=["POST"], name=f"segment_{_call}_short",
                         openapi_extra=_doc,
                         summary=f"Segment's {_call} call, at the browser SDK's path")
router.add_api_route("/b", batch, methods=["POST"], name="segment_batch_short", openapi_extra=_body_doc(BATCH_SCHEMA),
                     summary="Segment's batch call, at the browser SDK's path (its batching delivery)")


def take(system: System, messages: list[tuple[Any, str | None]], sent_at: Any) -> dict[str, Any]:
    """Store what can be stored (touchpoints and identity links), one transaction; say what
    became of the rest."""
    received = datetime.now(UTC)
    items: list[Any] = []
    indices: list[int] = []
    links: list[tuple[int, IdentityLink]] = []
    rejected: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    for index, (message, call) in enumerate(messages):
        message_id = echoable(message.get("messageId")) if isinstance(message, dict) else None
        try:
            parsed = segment.parse(message, call, system.playbook, received, sent_at)
        except segment.SegmentError as error:
            rejected.append({"index": index, "messageId": message_id, "reason": str(error)})
            continue
        if isinstance(parsed, IdentityLink):
            links.append((index, parsed))
        elif parsed is None:
            ignored.append({"index": index, "messageId": message_id, "reason": _ignored(message, call)})
        else:
            items.append(validated(parsed))
            indices.append(index)
    stored = record_items(system, items, INTAKE, [link for _, link in links]) if items or links else None
    touchpoints = list(zip(indices, items, stored.batch.results if stored else [], strict=False))
    linked = [(i, None, result_of(r, None, i)) for (i, _), r in zip(links, stored.links if stored else [], strict=False)]
    for index, item, result in touchpoints + linked:
        if result.outcome in (Outcome.invalid, Outcome.conflict):
            rejected.append({"index": index, "messageId": echoable(result.touchpoint_id), "reason": _reason(item, result)})
    rejected.sort(key=lambda r: r["index"])

    def count(found: list[Any], outcome: Outcome) -> int:
        return sum(result.outcome is outcome for _, _, result in found)

    return {
        "success": True, "received": len(messages), "recorded": count(touchpoints, Outcome.recorded),
        "linked": count(linked, Outcome.recorded), "duplicates": count(touchpoints + linked, Outcome.duplicate),
        "rejected": rejected, "ignored": ignored, "position": stored.batch.position if stored else None,
    }


def _ignored(message: dict[str, Any], call: str | None) -> str:
    if (call or message.get("type")) == "identify":
        return "identify without both anonymousId and userId links nothing; traits are not stored"
    return "group calls are accepted and not stored: they are not touchpoints"


def _reason(item: Any, result: Any) -> str:
    if isinstance(item, Rejected):
        return "; ".join(f"{_segment_field(e)}: {e.reason}" for e in item.errors)
    return result.detail or result.outcome.value


def _segment_field(error: FieldError) -> str:
    """The Segment field a touchpoint field came from, so the publisher knows what to fix."""
    head = error.field.split(".")[0]
    return {"touchpoint_id": "messageId", "customer_id": "userId/anonymousId", "occurred_at": "timestamp",
            "type": "event", "campaign": "context.campaign.name"}.get(head, error.field)
