"""Kafka message forms: plain JSON and CloudEvents 1.0, structured and binary."""

from __future__ import annotations

import json

import pytest

from consumers.messages import InvalidMessage, parse
from tests.factories import payload

LIMIT = 1_048_576


def test_plain_json():
    t = parse(json.dumps(payload("t1", "email_opened", 0)).encode(), {}, b"acme", LIMIT)
    assert (t.touchpoint_id, t.customer_id, t.type) == ("t1", "acme", "email_opened")


def test_structured_cloudevent_fills_id_time_source_from_the_envelope():
    data = {"customer_id": "acme", "type": "demo_delivered", "channel": "meeting"}
    envelope = {"specversion": "1.0", "id": "ce-1", "source": "crm", "type": "com.example.touchpoint",
                "time": "2026-03-02T09:00:00Z", "data": data}
    t = parse(json.dumps(envelope).encode(), {"content-type": "application/cloudevents+json; charset=utf-8"}, None, LIMIT)
    assert (t.touchpoint_id, t.source, t.occurred_at.isoformat()) == ("ce-1", "crm", "2026-03-02T09:00:00+00:00")


def test_binary_cloudevent_reads_ce_headers_and_the_key():
    data = {"type": "trial_started", "channel": "product", "source": "app"}
    headers = {"ce_specversion": "1.0", "ce_id": "ce-2", "ce_source": "ignored-because-data-has-source",
               "ce_type": "com.example.touchpoint", "ce_time": "2026-03-02T10:00:00+01:00",
               "content-type": "application/json"}
    t = parse(json.dumps(data).encode(), headers, b"globex", LIMIT)
    assert (t.touchpoint_id, t.customer_id, t.source) == ("ce-2", "globex", "app")
    assert t.occurred_at.isoformat() == "2026-03-02T09:00:00+00:00"


@pytest.mark.parametrize(
    ("value", "headers", "kind", "reason"),
    [
        (b"\xff\xfe not json", {}, "not_json", "not JSON"),
        (b"[1, 2]", {}, "invalid", "JSON object"),
        (json.dumps({**payload("t1", "email_opened", 0), "channel": "fax"}).encode(), {}, "invalid", "channel"),
        (b'{"specversion": "1.0", "id": "x", "data": "text"}', {"content-type": "application/cloudevents+json"}, "invalid", "data must be"),
        (b"x" * 2000, {}, "oversize", "limit is 1024"),
        (None, {}, "empty", "no value"),
    ],
)
def test_what_cannot_be_a_touchpoint_says_why(value, headers, kind, reason):
    with pytest.raises(InvalidMessage) as error:
        parse(value, headers, None, 1024 if kind == "oversize" else LIMIT)
    assert error.value.kind == kind
    assert reason in error.value.reason


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not_json"),  # deeper than json can recurse
        (json.dumps({**payload("t1", "email_opened", 0), "actor": "x\x00y"}).encode(), "invalid"),
        (json.dumps({**payload("t1", "email_opened", 0), "properties": {"k": "\ud800"}}).encode(), "invalid"),
        (json.dumps({**payload("t1", "email_opened", 0), "occurred_at": "0001-01-01T00:00:00+14:00"}).encode(), "invalid"),
        (b"\xff\xfe not utf-8", "not_json"),
    ],
)
def test_hostile_messages_become_dead_letters_with_a_reason(value: bytes, kind: str):
    with pytest.raises(InvalidMessage) as error:
        parse(value, {}, b"acme", 10 * LIMIT)
    assert error.value.kind == kind and error.value.reason
