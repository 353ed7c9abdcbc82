"""GET /metrics in Prometheus' format, read with prometheus_client's own parser: the counters
move as touchpoints arrive and are projected (issue 11, operations metrics)."""

from __future__ import annotations

import urllib.request

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from journeys import metrics
from journeys.storage.api_keys import Role
from tests.factories import payload


def scrape(client: TestClient, key: str) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_as_touchpoints_arrive(client: TestClient, keys):
    operator = keys.create("prometheus", Role.operator)
    before = scrape(client, operator)
    answer = client.post("/touchpoints/batch", json=[
        payload("m1", "inquiry_received", 0, "mia"),
        payload("m2", "demo_delivered", 1, "mia"),
        payload("m3", "email_opened", 0, "max"),
        {"touchpoint_id": "m4", "customer_id": "max"},  # invalid
    ])
    position = answer.json()["position"]
    assert client.post("/touchpoints/batch", json=[payload("m1", "inquiry_received", 0, "mia")]).status_code == 200
    client.get("/customers/mia/stages", params={"min_position": position}).raise_for_status()
    after = scrape(client, operator)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("journeys_touchpoints_received_total", outcome="recorded", intake="http") == 3
    assert moved("journeys_touchpoints_received_total", outcome="invalid", intake="http") == 1
    assert moved("journeys_touchpoints_received_total", outcome="duplicate", intake="http") == 1
    assert moved("journeys_stage_transitions_total", journey="buyer", stage="Identify Need") == 1
    assert moved("journeys_stage_transitions_total", journey="buyer", stage="Evaluation") == 1
    assert moved("journeys_stage_transitions_total", journey="awareness", stage="Aware") == 1  # max
    assert moved("journeys_http_request_duration_seconds_count", method="POST", route="/touchpoints/batch", status="200") == 2
    assert value(after, "journeys_projection_position") == position
    assert value(after, "journeys_projection_lag_events") == 0
    assert value(after, "journeys_projection_lag_seconds") == 0
    # Route templates, never paths: no customer key in a label.
    assert not any("mia" in str(labels) for _, labels in after)


def test_metrics_need_an_operator_key(client: TestClient, keys):
    for role in (Role.publisher, Role.marketer, Role.auditor):
        key = keys.create(f"not-operator-{role.value}", role)
        assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401


def test_a_process_without_the_api_serves_them_on_its_own_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics.serve(port, "127.0.0.1")
    metrics.DEAD_LETTERS.labels("invalid").inc(0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"journeys_touchpoints_received", "journeys_projection_lag_events", "journeys_dead_letters"} <= names
