"""CloudEvents exactly as the official Python SDK writes them, over Kafka and over HTTP.

The SDK is `cloudevents` 2.x: `cloudevents.v1` is the 1.x API (its conversions are the
1.x package's, moved under a new name) and `cloudevents.core` the new one. Both are
driven in binary and structured mode, with JSON data and with bytes data (which the
structured mode writes as data_base64); nothing here builds a message by hand.
"""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from cloudevents.core.bindings import http as core_http
from cloudevents.core.bindings import kafka as core_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CoreEvent
from cloudevents.v1 import kafka as v1_kafka
from cloudevents.v1.conversion import to_binary as v1_http_binary
from cloudevents.v1.conversion import to_structured as v1_http_structured
from cloudevents.v1.http import CloudEvent as V1Event

from consumers.touchpoints import TouchpointConsumer
from projections.system import System
from tests.kafka_helpers import Running, produce
from tests.waiting import wait_until

CUSTOMER = "ce-buyer@example.com"


def touchpoint(i: int) -> dict:
    """A touchpoint's fields, leaving id, time and source to the event's attributes."""
    return {"customer_id": CUSTOMER, "type": "webinar_attended", "channel": "event", "properties": {"seat": i}}


def attributes(i: int, api: str) -> dict:
    return {"id": f"{api}-{i}", "source": f"/sdk/{api}", "type": "com.example.touchpoint",
            "time": f"2026-03-0{i}T09:00:00Z" if api == "v1" else None, "datacontenttype": "application/json"}


def v1_event(i: int, data_as_bytes: bool = False) -> V1Event:
    data = touchpoint(i)
    return V1Event(attributes(i, "v1"), json.dumps(data).encode() if data_as_bytes else data)


def core_event(i: int, data_as_bytes: bool = False) -> CoreEvent:
    from datetime import datetime

    data = touchpoint(i)
    attrs = {k: v for k, v in attributes(i, "core").items() if v is not None}
    attrs["time"] = datetime(2026, 3, i, 9, tzinfo=UTC)
    return CoreEvent(attrs, json.dumps(data).encode() if data_as_bytes else data)


def kafka_messages() -> dict[str, tuple]:
    """(key, value, headers) as each SDK call produced them."""
    fmt = JSONFormat()
    made = {
        "v1-1": v1_kafka.to_binary(v1_event(1)),
        "v1-2": v1_kafka.to_structured(v1_event(2)),
        "v1-3": v1_kafka.to_structured(v1_event(3, data_as_bytes=True)),
        "core-4": core_kafka.to_binary(core_event(4), fmt),
        "core-5": core_kafka.to_structured(core_event(5), fmt),
        "core-6": core_kafka.to_structured(core_event(6, data_as_bytes=True), fmt),
    }
    return {name: (m.key, m.value, list(m.headers.items())) for name, m in made.items()}


def test_the_sdk_frames_differ_as_documented():
    """What makes this worth testing: the 1.x SDK's structured Kafka message is labelled with the
    data's content type, and bytes data travels as data_base64."""
    messages = kafka_messages()
    assert dict(messages["v1-2"][2])["content-type"] == b"application/json"
    assert dict(messages["core-5"][2])["content-type"] == b"application/cloudevents+json"
    assert "data_base64" in json.loads(messages["v1-3"][1]) and "data_base64" in json.loads(messages["core-6"][1])
    assert "ce_specversion" in dict(messages["v1-1"][2]) and "ce_specversion" in dict(messages["core-4"][2])


def test_sdk_messages_over_kafka_are_recorded(system: System, kafka_settings):
    messages = kafka_messages()
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic,
            [(key, value, headers) for key, value, headers in messages.values()])
    with Running(TouchpointConsumer(system, kafka_settings)) as consumer:
        wait_until(lambda: sum(consumer.counts.values()) >= len(messages), what="the SDK's messages")
    assert consumer.counts == {"recorded": len(messages)}
    stored = {t.touchpoint_id: t for t in system.app.replay(CUSTOMER).touchpoints}
    assert sorted(stored) == sorted(messages)
    for name, t in stored.items():
        i = int(name.split("-")[1])
        assert t.occurred_at.day == i and t.source == f"/sdk/{name.split('-')[0]}"
        assert t.properties == {"seat": i}


@pytest.fixture
def publisher(client, keys):
    from journeys.storage.api_keys import Role

    return {"Authorization": f"Bearer {keys.create('ce-publisher', Role.publisher)}"}


def test_sdk_events_over_http_single_and_batch(client, publisher, system: System):
    fmt = JSONFormat()
    singles = {
        "v1-1": v1_http_binary(v1_event(1)),
        "v1-2": v1_http_structured(v1_event(2)),
        "core-3": core_http.to_binary(core_event(3), fmt),
        "core-4": core_http.to_structured(core_event(4), fmt),
        "core-5": core_http.to_structured(core_event(5, data_as_bytes=True), fmt),
    }
    for name, message in singles.items():
        headers, body = (message.headers, message.body) if hasattr(message, "body") else message
        answer = client.post("/cloudevents", content=body, headers={**dict(headers), **publisher})
        assert answer.status_code == 201, (name, answer.text)
        assert answer.json()["touchpoint_id"] == name
    again = client.post("/cloudevents", content=singles["core-4"].body, headers={**singles["core-4"].headers, **publisher})
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"

    batch = [json.loads(fmt.write(core_event(i))) for i in (6, 7)] + [{"specversion": "1.0", "id": "x"}]
    answer = client.post("/cloudevents", content=json.dumps(batch).encode(),
                         headers={"content-type": "application/cloudevents-batch+json", **publisher})
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["counts"]["recorded"] == 2 and out["counts"]["invalid"] == 1
    assert out["results"][2]["index"] == 2 and out["results"][2]["errors"][0]["field"] == "(event)"
    ids = {t.touchpoint_id for t in system.app.replay(CUSTOMER).touchpoints}
    assert ids == {*singles, "core-6", "core-7"}


@pytest.mark.parametrize(("headers", "body", "status", "says"), [
    ({"content-type": "application/json"}, b"{}", 415, "not a CloudEvent"),
    ({"content-type": "application/cloudevents+json"}, b"{not json", 400, "not JSON"),
    ({"content-type": "application/cloudevents-batch+json"}, b"{}", 400, "JSON array"),
    ({"content-type": "application/cloudevents+json"}, b'{"specversion": "9.9", "data": {}}', 422, "specversion"),
    ({"ce-specversion": "1.0", "ce-id": "b", "content-type": "text/plain"}, b"hello", 422, "text/plain"),
])
def test_what_is_not_a_cloudevent_touchpoint_says_why(client, publisher, headers, body, status, says):
    answer = client.post("/cloudevents", content=body, headers={**headers, **publisher})
    assert answer.status_code == status, answer.text
    assert says in answer.text
