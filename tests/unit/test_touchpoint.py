"""Input rules for touchpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from pydantic import ValidationError

from journeys.crypto import DataKey
from journeys.customer import Customer, CustomerErasedError, Outcome, TouchpointConflictError, touchpoint_from_event
from journeys.touchpoint import Touchpoint
from tests.factories import payload


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def errors_of(**changes):
    with pytest.raises(ValidationError) as error:
        Touchpoint(**{**payload("t1", "email_opened", 0), **changes})
    return {".".join(map(str, e["loc"])): e["msg"] for e in error.value.errors()}


def test_normalised_to_utc():
    t = Touchpoint(**{**payload("t1", "email_opened", 0), "occurred_at": "2026-03-02T10:00:00+01:00"})
    assert t.occurred_at == datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"occurred_at": "2026-03-02T10:00:00"}, "occurred_at", "time zone"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(hours=25)).isoformat()}, "occurred_at", "24 hours in the future"),
        ({"touchpoint_id": "x" * 101}, "touchpoint_id", "at most 100"),
        ({"type": "EmailOpened"}, "type", "pattern"),
        ({"channel": "pigeon"}, "channel", "web"),
        ({"properties": {"blob": "x" * 33_000}}, "properties", "limit is 32768"),
        ({"surprise": 1}, "surprise", "not permitted"),
        # Found by probing the service as an attacker would (issue 7):
        ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at", "must lie from 1900 to 9998"),
        ({"occurred_at": "1066-10-14T09:00:00Z"}, "occurred_at", "must lie from 1900 to 9998"),
        ({"occurred_at": 1772442000}, "occurred_at", "RFC 3339"),
        ({"customer_id": "   "}, "customer_id", "more than white space"),
        ({"customer_id": "a\x00b"}, "customer_id", "NUL"),
        ({"touchpoint_id": "t\x00"}, "touchpoint_id", "NUL"),
        ({"source": "\ud800"}, "source", "unicode string"),
        ({"actor": "jane\x00"}, "actor", "NUL"),
        ({"properties": {"note": "a\x00b"}}, "properties", "properties.note contains a NUL"),
        ({"properties": {"k\x00": 1}}, "properties", "NUL"),
        ({"properties": {"list": [{"deep": "\udfff"}]}}, "properties", "properties.list.0.deep contains a lone surrogate"),
        ({"properties": nested(17)}, "properties", "nested more than 16 levels"),
        ({"properties": nested(999)}, "properties", "nested more than 16 levels"),
    ],
)
def test_rejections_name_the_field_and_the_reason(changes, field, reason):
    found = errors_of(**changes)
    assert field in found, found
    assert reason in found[field]


def test_far_future_date_with_negative_offset_is_refused_not_overflowing():
    found = errors_of(occurred_at="9999-12-31T23:59:59-14:00")
    assert "occurred_at" in found


def test_sixteen_levels_of_properties_are_accepted():
    Touchpoint(**{**payload("t1", "email_opened", 0), "properties": nested(16)})


def test_near_future_is_accepted():
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    Touchpoint(**{**payload("t1", "email_opened", 0), "occurred_at": soon})


def test_customer_records_once_and_refuses_changed_content():
    first = Touchpoint(**payload("t1", "email_opened", 0, actor="Jane Doe"))
    key, _ = DataKey.generate()
    record_id = uuid4()
    customer = Customer.register(record_id, "acme", key)
    assert customer.id == record_id
    outcome, fingerprint = customer.record(first, key, None)
    assert outcome is Outcome.recorded
    assert customer.record(first, key, fingerprint) == (Outcome.duplicate, fingerprint)
    with pytest.raises(TouchpointConflictError, match="different content"):
        customer.record(first.model_copy(update={"channel": "email"}), key, fingerprint)
    registered, recorded = customer.collect_events()  # Registered + one TouchpointRecorded
    assert "acme" not in str(registered.__dict__) and "Jane" not in str(recorded.__dict__)
    opened = touchpoint_from_event(recorded, key)
    assert (opened.customer_id, opened.actor, opened.type) == ("acme", "Jane Doe", "email_opened")
    erased = touchpoint_from_event(recorded, None)
    assert (erased.customer_id, erased.actor, erased.properties, erased.type) == ("erased", "erased", "erased", "email_opened")


def test_an_erased_customer_takes_no_more_touchpoints():
    key, _ = DataKey.generate()
    customer = Customer.register(uuid4(), "acme", key)
    customer.erase("admin")
    with pytest.raises(CustomerErasedError):
        customer.record(Touchpoint(**payload("t1", "email_opened", 0)), key, None)
