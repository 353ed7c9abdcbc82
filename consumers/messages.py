"""Kafka messages to touchpoints: plain JSON, or CloudEvents 1.0 (structured or binary mode)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from journeys.intake import cloudevent
from journeys.touchpoint import NotJsonError, Touchpoint, read_json


class InvalidMessage(Exception):
    """A message that cannot be a touchpoint; `kind` says which way it failed."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def headers_of(raw: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k.lower(): (v or b"").decode("utf-8", "replace") for k, v in raw or []}


def parse(value: bytes | None, headers: dict[str, str], key: bytes | None, max_bytes: int) -> Touchpoint:
    """The touchpoint a message carries, or InvalidMessage saying what is wrong."""
    if value is None:
        raise InvalidMessage("empty", "the message has no value")
    if len(value) > max_bytes:
        raise InvalidMessage("oversize", f"{len(value)} bytes; the limit is {max_bytes}")
    try:
        if "ce_specversion" in headers:  # binary mode: attributes in ce_* headers, data in the value
            fields = cloudevent.binary(headers, value, "ce_")
        else:
            body = _json(value)
            if cloudevent.is_structured(body):  # whatever the content-type (the 1.x SDK's is the data's)
                fields = cloudevent.structured(body, headers.get("content-type"))
            elif cloudevent.media_type(headers.get("content-type")) == cloudevent.STRUCTURED:
                raise InvalidMessage("invalid", "a structured CloudEvent needs a JSON object with specversion")
            else:
                fields = body
    except cloudevent.CloudEventError as error:
        kind = "not_json" if isinstance(error, cloudevent.DataNotJsonError) else "invalid"
        raise InvalidMessage(kind, str(error)) from None
    if not isinstance(fields, dict):
        raise InvalidMessage("invalid", "the touchpoint must be a JSON object")
    if "customer_id" not in fields and key:
        fields = {**fields, "customer_id": key.decode("utf-8", "replace")}
    try:
        return Touchpoint.model_validate(fields)
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidMessage("invalid", reasons) from None


def _json(value: bytes) -> Any:
    try:
        return read_json(value, "the value")
    except NotJsonError as error:
        raise InvalidMessage("not_json", str(error)) from None

