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
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_PROPERTIES_BYTES = 32 * 1024
MAX_PROPERTIES_DEPTH = 16
MAX_FUTURE_SKEW = timedelta(hours=24)
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)


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


class NotJsonError(ValueError):
    """Bytes that cannot be read as JSON; the message says why."""


def read_json(raw: bytes, what: str) -> Any:
    """JSON from bytes, or NotJsonError naming `what` (e.g. "the body") and the reason."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotJsonError(f"{what} is not JSON: {error}") from None
    except RecursionError:
        raise NotJsonError(f"{what} is JSON nested far too deeply to be read") from None


def check_text(value: str) -> str:
    """Text every store can hold: no NUL (PostgreSQL refuses it) and no lone surrogate."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (e.g. \\ud800), which is not valid Unicode") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than white space")
    return check_text(value)


def _rfc3339_text(value: Any) -> Any:
    """A timestamp is RFC 3339 text (or a datetime from our own code), never a number."""
    if isinstance(value, (str, datetime)):
        return value
    raise ValueError("must be an RFC 3339 timestamp string with a time zone, e.g. 2026-03-10T14:00:00Z")


def _utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the supported range of dates") from None
    if utc < EARLIEST:
        raise ValueError(f"{utc.isoformat()} is before {EARLIEST.date().isoformat()}; not a real touchpoint time")
    return utc


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc)]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
Id = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]
Role = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]
Criterion = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]


class Touchpoint(BaseModel):
    """What a publisher sends: validated, normalised to UTC, immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)

    touchpoint_id: Id
    customer_id: Text
    type: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=100)
    channel: Channel
    occurred_at: UtcDatetime
    source: Text
    actor: Text | None = None
    campaign: Text | None = None
    deal_id: Text | None = None
    account_id: Text | None = Field(None, description="the account (company) in whose buying centre the contact is")
    case_id: Text | None = Field(None, description="the case (e.g. a complaint) this touchpoint is part of")
    buying_role: Role | None = Field(None, description="the contact's role in the buying centre, e.g. decider")
    criteria: list[Criterion] = Field(
        default_factory=list, max_length=20,
        description="qualification criteria this touchpoint confirmed (VBANT); properties.criteria works too",
    )
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _criteria_from_properties(cls, data: Any) -> Any:
        """Publishers often put the criteria in the properties; they are read from there too."""
        if isinstance(data, dict) and not data.get("criteria"):
            found = (data.get("properties") or {}).get("criteria") if isinstance(data.get("properties"), dict) else None
            if isinstance(found, list) and all(isinstance(c, str) for c in found):
                return {**data, "criteria": found}
        return data

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
        check_json(value, MAX_PROPERTIES_DEPTH)
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


def check_json(value: Any, max_depth: int, path: str = "properties", depth: int = 1) -> None:
    """Refuse JSON nested deeper than `max_depth`, or holding text no store can keep.

    Iterates rather than recursing into the data's own depth: the check itself must not
    fail on the input it exists to refuse.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > max_depth:
                raise ValueError(f"{where} is nested more than {max_depth} levels deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    _check_at(key, f"{where} key {key[:40]!r}")
                stack.append((child, f"{where}.{key}", level + 1))
        elif isinstance(item, str):
            _check_at(item, where)


def _check_at(text: str, where: str) -> None:
    try:
        check_text(text)
    except ValueError as error:
        raise ValueError(f"{where} {error}") from None


def fingerprint(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
