"""Kafka messages to touchpoints: plain JSON, or CloudEvents 1.0 (structured or binary mode)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from journeys.touchpoint import Touchpoint

CLOUDEVENTS_JSON = "application/cloudevents+json"
# CloudEvents attributes that stand in for touchpoint fields the data leaves out.
CE_FALLBACKS = {"id": "touchpoint_id", "time": "occurred_at", "source": "source"}


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
    body = _json(value)
    if "ce_specversion" in headers:  # binary mode: attributes in ce_* headers, data in the value
        attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
        fields = _with_fallbacks(body, attributes)
    elif headers.get("content-type", "").split(";")[0].strip() == CLOUDEVENTS_JSON:
        if not isinstance(body, dict) or "specversion" not in body:
            raise InvalidMessage("invalid", "a structured CloudEvent needs a JSON object with specversion")
        fields = _with_fallbacks(body.get("data"), body)
    else:
        fields = body
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
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidMessage("not_json", f"the value is not JSON: {error}") from None
    except RecursionError:
        raise InvalidMessage("not_json", "the value is JSON nested far too deeply to be read") from None


def _with_fallbacks(data: Any, attributes: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise InvalidMessage("invalid", "the CloudEvent's data must be a JSON object (the touchpoint)")
    filled = dict(data)
    for attribute, field in CE_FALLBACKS.items():
        if field not in filled and attributes.get(attribute) is not None:
            filled[field] = attributes[attribute]
    return filled
