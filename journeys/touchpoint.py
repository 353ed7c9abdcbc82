"""A touchpoint: one interaction between a customer and the company."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

MAX_PROPERTIES_BYTES = 32 * 1024
MAX_FUTURE_SKEW = timedelta(hours=24)


class Channel(str, Enum):
    web = "web"
    email = "email"
    phone = "phone"
    meeting = "meeting"
    event = "event"
    ads = "ads"
    chat = "chat"
    social = "social"
    support = "support"
    product = "product"
    other = "other"


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Touchpoint(BaseModel):
    """What a publisher sends: validated, normalised to UTC, immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)

    touchpoint_id: str = Field(min_length=1, max_length=100)
    customer_id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=100)
    channel: Channel
    occurred_at: UtcDatetime
    source: Text
    actor: Text | None = None
    campaign: Text | None = None
    deal_id: Text | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _not_far_future(cls, value: datetime) -> datetime:
        limit = datetime.now(timezone.utc) + MAX_FUTURE_SKEW
        if value > limit:
            raise ValueError(
                f"occurred_at {value.isoformat()} is more than 24 hours in the future"
            )
        return value

    @field_validator("properties")
    @classmethod
    def _properties_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(
                f"properties is {size} bytes of JSON; the limit is {MAX_PROPERTIES_BYTES}"
            )
        return value

    def content(self) -> dict[str, Any]:
        """The publisher's content as JSON-ready data (what makes two deliveries equal)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        return fingerprint(self.content())

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """Occurred order, ties broken by the publisher's id."""
        return (self.occurred_at, self.touchpoint_id)


def fingerprint(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
