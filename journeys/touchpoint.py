"""A touchpoint: one interaction between a customer and the company."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_PROPERTIES_BYTES = 32 * 1024
MAX_PROPERTIES_DEPTH = 16
MAX_FUTURE_SKEW = timedelta(hours=24)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # exclusive: a year short of the calendar's end, so
# windows and periods computed from a date (a day after, the period before) never overflow


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
    except json.JSONDecodeError as error:  # its message names a position, never the text
        raise NotJsonError(f"{what} is not JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise NotJsonError(f"{what} is not JSON: it is not UTF-8 (byte {error.start})") from None
    except RecursionError:
        raise NotJsonError(f"{what} is JSON nested far too deeply to be read") from None
    except ValueError:  # Python's guard against quadratic int parsing (sys.get_int_max_str_digits)
        raise NotJsonError(f"{what} holds a number with more than {sys.get_int_max_str_digits()} digits") from None


def check_key(value: str) -> str:
    """A key (customer, deal, account, case, touchpoint) as one spelling: Unicode NFC, so a composed
    and a decomposed "é" are the same customer; surrounding white space is refused, not trimmed,
    so two keys that differ only there never merge silently."""
    not_blank(value)
    if value != value.strip():
        raise ValueError("begins or ends with white space; send the key without it")
    return unicodedata.normalize("NFC", value)


def check_text(value: str) -> str:
    """Text every store can hold: no NUL (PostgreSQL refuses it) and no lone surrogate."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (e.g. \\ud800), which is not valid Unicode") from None
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than white space")
    return check_text(value)


TIME_AND_ZONE = r"[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})"  # after the date, in both below
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}" + TIME_AND_ZONE)


def _rfc3339_text(value: Any) -> Any:
    """A timestamp is RFC 3339 text (or a datetime from our own code), never a number, not even
    one in a string (pydantic would read "1773151200" as seconds since 1970)."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 timestamp string with a time zone, e.g. 2026-03-10T14:00:00Z")


def _utc(value: datetime) -> datetime:
    """In UTC; the year as written must lie from EARLIEST's to before LATEST's (what the
    OpenAPI document's pattern says, so the document and the check agree exactly)."""
    if not EARLIEST.year <= value.year < LATEST.year:
        raise ValueError(f"must lie from {EARLIEST.year} to {LATEST.year - 1} (the year as written)")
    return value.astimezone(UTC)


YEAR_PATTERN = r"(19[0-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9][0-9]|99[0-8][0-9]|999[0-8])"  # 1900-9998, EARLIEST's year to before LATEST's
# The document's pattern names the ranges of each part (a month 01-12, an hour 00-23, ...), which the
# parser refuses too; it cannot say which days a month has (2026-02-30 is refused with a 422).
DATE_PATTERN = ("^" + YEAR_PATTERN + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
                r"(:[0-5][0-9](\.[0-9]{1,9})?)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")


UtcDatetime = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATE_PATTERN,
                    "description": "RFC 3339 with a time zone, years 1900 to 9998"}),
]
# What check_key refuses, as a pattern the OpenAPI document carries: no NUL, no white space at either end.
# Python's white space (str.isspace), spelled out: \s differs between Python, Rust and ECMAScript.
SPACE = r"\t\n\u000b\u000c\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
KEY_PATTERN = rf"^[^{SPACE}\u0000]([^\u0000]*[^{SPACE}\u0000])?$"
TEXT_PATTERN = rf"^[^\u0000]*[^{SPACE}\u0000][^\u0000]*$"  # what not_blank refuses: blank, or a NUL
Text = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": TEXT_PATTERN}),
                 AfterValidator(not_blank)]
Id = Annotated[str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": KEY_PATTERN}), AfterValidator(check_key)]
Key = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": KEY_PATTERN}),
                AfterValidator(check_key)]  # check_key says what is wrong, clearly
Role = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]
Criterion = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]


class Touchpoint(BaseModel):
    """What a publisher sends: validated, normalised to UTC, immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)

    touchpoint_id: Id
    customer_id: Key
    type: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=100)
    channel: Channel
    occurred_at: UtcDatetime
    source: Text
    actor: Text | None = None
    campaign: Text | None = None
    deal_id: Key | None = None
    account_id: Key | None = Field(None, description="the account (company) in whose buying centre the contact is")
    case_id: Key | None = Field(None, description="the case (e.g. a complaint) this touchpoint is part of")
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
        limit = datetime.now(UTC) + MAX_FUTURE_SKEW
        if value > limit:
            raise ValueError("is more than 24 hours in the future")
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
            for index, (key, child) in enumerate(pairs):
                name = _safe_name(key, index)
                if isinstance(key, str):
                    _check_at(key, f"{where} key {name}")
                stack.append((child, f"{where}.{name}", level + 1))
        elif isinstance(item, str):
            _check_at(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where} is not a finite number (NaN, Infinity or beyond 1.8e308 cannot be stored as sent)")


SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _safe_name(key: Any, index: int) -> str:
    """How an error names a property: by its key if that is a plain name, else by its position
    (#3): a key may itself be personal data or unprintable, and errors never echo input."""
    if isinstance(key, int):
        return str(key)
    return key if isinstance(key, str) and SAFE_NAME.fullmatch(key) else f"#{index}"


def _check_at(text: str, where: str) -> None:
    try:
        check_text(text)
    except ValueError as error:
        raise ValueError(f"{where} {error}") from None


def fingerprint(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
