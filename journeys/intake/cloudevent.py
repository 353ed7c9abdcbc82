"""CloudEvents 1.0 to touchpoint fields, as the official SDKs write them, over Kafka and HTTP.

The event's data is the touchpoint; the context attributes stand in for fields the
data leaves out (id, time, source, subject). The SDKs differ in how they frame an
event, and all of these are read:

- binary mode: attributes in `ce_*` (Kafka) or `ce-*` (HTTP, percent-encoded)
  headers, the data as the message value or body, `content-type` its media type;
- structured mode: the whole event as a JSON object with `specversion`, `data` or
  `data_base64`; the 2.x SDK labels it `application/cloudevents+json`, while the
  1.x SDK's Kafka binding puts the *data's* content type (or none) in the
  `content-type` header and leaves `datacontenttype` out of the envelope.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from journeys.touchpoint import NotJsonError, read_json

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPEC_VERSIONS = ("1.0", "0.3")
# Context attributes that stand in for touchpoint fields the data leaves out.
FALLBACKS = {"id": "touchpoint_id", "time": "occurred_at", "source": "source", "subject": "customer_id"}


class CloudEventError(ValueError):
    """The input is not a CloudEvent whose data is a touchpoint; the message says why."""


class DataNotJsonError(CloudEventError):
    """The event's data cannot be read as JSON."""


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_structured(body: Any) -> bool:
    return isinstance(body, dict) and "specversion" in body


def structured(envelope: Any, content_type: str | None = None) -> dict[str, Any]:
    """Touchpoint fields from a structured-mode event (a parsed JSON object). `content_type`
    is the frame's header, the data's media type where the envelope does not say."""
    if not is_structured(envelope):
        raise CloudEventError("a structured CloudEvent is a JSON object with specversion")
    check_version(envelope["specversion"])
    declared = envelope.get("datacontenttype")
    if declared is None and media_type(content_type) not in ("", STRUCTURED):
        declared = content_type
    if "data_base64" in envelope:
        data = _data(_base64(envelope["data_base64"]), declared)
    else:
        data = envelope.get("data")
        if isinstance(data, str) and data.lstrip().startswith("{") and _is_json(declared):
            data = _data(data.encode("utf-8"), declared)  # serialised twice: a JSON object inside a string
    return _with_fallbacks(data, envelope)


def binary(headers: dict[str, str], body: bytes, prefix: str) -> dict[str, Any]:
    """Touchpoint fields from a binary-mode event: attributes in headers named `prefix` +
    attribute (lower case), the data in `body`. HTTP header values are percent-encoded."""
    attributes = {
        name[len(prefix):]: unquote(value) if prefix == "ce-" else value
        for name, value in headers.items() if name.startswith(prefix)
    }
    check_version(attributes.get("specversion"))
    return _with_fallbacks(_data(body, headers.get("content-type")), attributes)


def check_version(version: Any) -> None:
    if version not in SPEC_VERSIONS:
        raise CloudEventError(f"this specversion is not one this reads ({', '.join(SPEC_VERSIONS)})")


def _is_json(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind == "" or kind == "application/json" or kind.endswith("+json") or kind == "text/json"


def _data(raw: bytes, content_type: str | None) -> Any:
    if not _is_json(content_type):
        raise CloudEventError(f"the event's data is {media_type(content_type)}; a touchpoint is application/json")
    try:
        return read_json(raw, "the event's data")
    except NotJsonError as error:
        raise DataNotJsonError(str(error)) from None


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise CloudEventError("data_base64 must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CloudEventError("data_base64 is not valid base64") from None


def _with_fallbacks(data: Any, attributes: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CloudEventError("the CloudEvent's data must be a JSON object (the touchpoint)")
    filled = dict(data)
    for attribute, field in FALLBACKS.items():
        if field not in filled and attributes.get(attribute) is not None:
            filled[field] = attributes[attribute]
    return filled
