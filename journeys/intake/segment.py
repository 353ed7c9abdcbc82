"""Segment tracking-spec messages to touchpoints and identity links.

As Segment's SDKs send them (the spec's common fields): `messageId` is the touchpoint
id, `userId` (else `anonymousId`) the customer key, the event or page name the
touchpoint type (see the playbook's `segment` names), `properties` the properties,
`context.campaign` the campaign. `identify` with both ids and `alias` are identity
links (the anonymous or previous id's customer is the user id's, see projections/stages.py).
The time a call happened is `timestamp` (else `originalTimestamp`); a client
clock more than MAX_TRANSIT off ours (sentAt against when we received it) is
corrected as Segment does, timestamp + (received - sentAt), to the minute, so that a
retried batch (a new sentAt) still gives the same time, hence a duplicate.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from journeys.customer import IdentityLink
from journeys.playbook import Playbook
from journeys.touchpoint import Channel, Key

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_TRANSIT = timedelta(minutes=5)
CALLS = ("track", "page", "screen", "identify", "alias", "group")
# utm_medium values (context.campaign.medium) that name a channel.
MEDIUM_CHANNELS = {
    "email": Channel.email, "newsletter": Channel.email, "cpc": Channel.ads, "ppc": Channel.ads,
    "paid": Channel.ads, "display": Channel.ads, "paid_social": Channel.ads, "social": Channel.social,
    "event": Channel.event, "webinar": Channel.event,
}
CUSTOMER_KEY = TypeAdapter(Key)  # the rule of a touchpoint's customer_id
# Properties that are touchpoint fields of their own.
FIELD_PROPERTIES = ("deal_id", "account_id", "case_id", "buying_role", "actor")


class SegmentError(ValueError):
    """A message that is not a call this intake takes; the message says why."""


def snake_case(name: str) -> str:
    """"Demo Completed" -> demo_completed, "DemoCompleted" -> demo_completed."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def message_size(message: Any) -> int:
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "replace"))


def parse(message: Any, call: str | None, playbook: Playbook, received_at: datetime,
          sent_at: Any = None) -> dict[str, Any] | IdentityLink | None:
    """Touchpoint fields (track, page, screen), an IdentityLink (identify with both ids, alias), or None
    (a call that stores nothing: identify without an anonymousId, group). `call` is the
    route's (None: the message's own `type`, as in a batch); `sent_at` the batch's."""
    if not isinstance(message, dict):
        raise SegmentError("a message must be a JSON object")
    size = message_size(message)
    if size > MAX_EVENT_BYTES:
        raise SegmentError(f"the message is {size} bytes of JSON; the limit is {MAX_EVENT_BYTES}")
    call = call or message.get("type")
    if call not in CALLS:
        raise SegmentError(f"this type is not a call this intake takes ({', '.join(CALLS)})")
    message_id = _id(message.get("messageId"), "messageId")
    if call == "alias":
        return IdentityLink(message_id, _text(message.get("previousId"), "previousId"), _text(message.get("userId"), "userId"), call)
    if call == "identify":
        if message.get("anonymousId") is None or message.get("userId") is None:
            return None  # traits alone: nothing to link, and traits are not touchpoints
        return IdentityLink(message_id, _text(message["anonymousId"], "anonymousId"), _text(message["userId"], "userId"), call)
    if call == "group":
        return None
    return _touchpoint(message, call, message_id, playbook, received_at, sent_at)


def _touchpoint(message: dict[str, Any], call: str, message_id: str, playbook: Playbook,
                received_at: datetime, sent_at: Any) -> dict[str, Any]:
    customer = message.get("userId") if message.get("userId") is not None else message.get("anonymousId")
    context = _object(message.get("context"), "context")
    campaign = _object(context.get("campaign"), "context.campaign")
    properties = _object(message.get("properties"), "properties")
    name = message.get("name") or properties.get("name")
    if call == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise SegmentError("event: a track call needs the event's name")
        kind = playbook.segment.events.get(event) or snake_case(event)
        properties = {**properties, "event": event}
    else:
        page = playbook.segment.pages.get(name) if isinstance(name, str) else None
        kind = page or playbook.segment.page
        if name is not None:
            properties = {**properties, "name": name}
    fields: dict[str, Any] = {
        "touchpoint_id": message_id,
        "customer_id": _id(customer, "userId or anonymousId"),
        "type": kind,
        "channel": _channel(call, properties, campaign, context),
        "occurred_at": occurred_at(message, received_at, sent_at),
        "source": f"segment/{_object(context.get('library'), 'context.library').get('name') or 'unknown'}",
        "campaign": campaign.get("name"),
        "properties": properties,
    }
    for key in FIELD_PROPERTIES:
        if properties.get(key) is not None:
            fields[key] = properties[key]
    if "account_id" not in fields and context.get("groupId") is not None:
        fields["account_id"] = context["groupId"]
    return fields


def occurred_at(message: dict[str, Any], received_at: datetime, sent_at: Any = None) -> Any:
    """When the call happened: its timestamp, corrected for a skewed client clock."""
    stamp = message.get("timestamp") if message.get("timestamp") is not None else message.get("originalTimestamp")
    if stamp is None:
        return received_at
    sent = message.get("sentAt") if message.get("sentAt") is not None else sent_at
    when, sent_time = _time(stamp), _time(sent)
    if when is None or sent_time is None:
        return stamp  # the touchpoint's own validation says what is wrong with it
    skew = received_at - sent_time
    if abs(skew) <= MAX_TRANSIT:
        return stamp
    try:
        return when + timedelta(minutes=round(skew.total_seconds() / 60))
    except OverflowError:
        return stamp


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _channel(call: str, properties: dict[str, Any], campaign: dict[str, Any], context: dict[str, Any]) -> str:
    named = properties.get("channel")
    if named in {c.value for c in Channel}:
        return named
    medium = campaign.get("medium")
    if isinstance(medium, str) and medium.lower() in MEDIUM_CHANNELS:
        return MEDIUM_CHANNELS[medium.lower()].value
    if call == "screen":
        return Channel.product.value
    if call == "page" or "page" in context:
        return Channel.web.value
    return Channel.other.value


def _id(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SegmentError(f"{name} is required and must be a string or a number")
    text = str(value)
    if not text.strip():
        raise SegmentError(f"{name} must not be empty")
    return text


def _text(value: Any, name: str) -> str:
    """An id that is stored as a customer key (a link's): what a touchpoint's customer_id may be."""
    try:
        return CUSTOMER_KEY.validate_python(_id(value, name))
    except ValidationError as error:
        raise SegmentError(f"{name}: {error.errors()[0]['msg']}") from None


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SegmentError(f"{name} must be a JSON object")
    return value
