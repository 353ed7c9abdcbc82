"""Input an attacker would send: bounded, refused with a clear 4xx, and nothing stored is harmed.

Each case here answered 500, hung, or poisoned the projection before (issue 7).
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from fastapi.testclient import TestClient

from journeys.settings import Settings
from journeys.touchpoint import Touchpoint
from projections.system import System
from tests.factories import payload


def good(i: int, customer: str = "acme", **extra) -> dict:
    return payload(f"t{i}", "email_opened", 0, customer, **extra)


def assert_still_works(client: TestClient, i: int = 9999) -> None:
    """Whatever came before, the next write and read are served and the projection keeps up."""
    recorded = client.post("/touchpoints", json=good(i, "after"))
    assert recorded.status_code == 201, recorded.text
    stages = client.get("/customers/after/stages", params={"min_position": recorded.json()["position"]})
    assert stages.status_code == 200, stages.text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["projection_error"] is None, health


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_id", "a\x00b"), ("touchpoint_id", "t\x00"), ("source", "\x00"), ("actor", "x\x00"),
        ("campaign", "c\x00"), ("deal_id", "\x00d"), ("properties", {"k\x00": 1}), ("properties", {"k": "v\x00"}),
    ],
)
def test_nul_in_any_text_field_is_refused_and_the_projection_keeps_going(client: TestClient, field, value):
    answer = client.post("/touchpoints", json={**good(1), field: value})
    assert answer.status_code == 422, answer.text
    assert any(field in ".".join(map(str, e["loc"])) for e in answer.json()["detail"])
    assert_still_works(client)


def test_nul_in_a_batch_item_fails_only_that_item(client: TestClient):
    answer = client.post("/touchpoints/batch", json=[good(1), {**good(2), "actor": "a\x00"}])
    assert answer.status_code == 200
    assert [r["outcome"] for r in answer.json()["results"]] == ["recorded", "invalid"]
    assert_still_works(client)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"touchpoint_id": "t1", "customer_id": "\\ud800", "type": "email_opened", "channel": "web", '
        b'"occurred_at": "2026-03-02T09:00:00Z", "source": "crm"}',
        b'[{"touchpoint_id": "t1", "customer_id": "a", "type": "email_opened", "channel": "web", '
        b'"occurred_at": "2026-03-02T09:00:00Z", "source": "crm", "properties": {"x": "\\udfff"}}]',
    ],
)
def test_lone_surrogates_are_refused(client: TestClient, raw: bytes):
    path = "/touchpoints/batch" if raw.startswith(b"[") else "/touchpoints"
    answer = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["results"][0]["outcome"] == "invalid"
    assert_still_works(client)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_dates_at_the_edge_of_the_calendar_fail_one_item_not_the_batch(client: TestClient, when: str):
    answer = client.post("/touchpoints/batch", json=[good(1), {**good(2), "occurred_at": when}])
    assert answer.status_code == 200, answer.text
    assert [r["outcome"] for r in answer.json()["results"]] == ["recorded", "invalid"]
    assert client.get("/customers/acme/stages", params={"as_of": when}).status_code == 422


@pytest.mark.parametrize("depth", [17, 300, 999, 5000, 100_000])
def test_deeply_nested_bodies_get_a_4xx_that_says_so(client: TestClient, depth: int):
    body = '{"touchpoint_id": "t1", "customer_id": "a", "type": "email_opened", "channel": "web", ' \
           '"occurred_at": "2026-03-02T09:00:00Z", "source": "crm", "properties": ' + '{"a":' * depth + "1" + "}" * depth + "}"
    answer = client.post("/touchpoints", content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text[:300]
    assert "nested" in answer.text
    assert_still_works(client)


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: TestClient):
    limit = Settings().max_body_bytes
    big = [good(i, properties={"blob": "x" * 30_000}) for i in range(200)]  # about 6 MB
    raw = json.dumps(big).encode()
    assert len(raw) > limit
    answer = client.post("/touchpoints/batch", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert "limit" in answer.json()["detail"]
    assert len(answer.content) < 1000  # nothing echoed back

    def chunks():  # no Content-Length: read up to the limit and no further
        for start in range(0, len(raw), 65536):
            yield raw[start : start + 65536]

    streamed = client.post("/touchpoints/batch", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert_still_works(client)


def test_a_batch_just_under_the_limit_is_stored(client: TestClient):
    items = [good(i, f"c{i % 40}", properties={"blob": "x" * 31_000}) for i in range(160)]  # about 5.0 MB
    raw = json.dumps(items).encode()
    assert 4.5e6 < len(raw) < 5 * 1024 * 1024
    answer = client.post("/touchpoints/batch", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["counts"]["recorded"] == 160


def test_invalid_input_is_not_echoed_back(client: TestClient):
    secret_ish = "x" * 100_000
    answer = client.post("/touchpoints/batch", json=[{**good(i), "channel": secret_ish} for i in range(3)])
    assert answer.status_code == 200
    assert secret_ish not in answer.text and len(answer.text) < 10_000
    single = client.post("/touchpoints", json={**good(1), "channel": secret_ish})
    assert single.status_code == 422 and secret_ish not in single.text


def test_too_many_items_and_malformed_json(client: TestClient):
    too_many = client.post("/touchpoints/batch", json=[{}] * 1001)
    assert too_many.status_code == 422 and "1000" in too_many.text
    broken = client.post("/touchpoints", content=b'{"touchpoint_id": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "JSON" in broken.json()["detail"]
    assert client.post("/touchpoints", content=b"x", headers={"content-length": "abc"}).status_code in (400, 413)


def test_nul_in_the_path_or_the_cursor_is_a_4xx(client: TestClient):
    assert client.get("/customers/a%00b/stages").status_code == 422
    assert client.get("/customers/a%00b/history").status_code == 422
    assert client.get("/segments", params={"cursor": "AA=="}).status_code == 422
    assert client.get("/segments", params={"cursor": "not base64!"}).status_code == 422
    assert client.get("/segments", params={"awareness": ""}).status_code == 422
    assert_still_works(client)


def test_a_min_position_beyond_the_log_is_refused_at_once(client: TestClient):
    answer = client.get("/customers/acme/stages", params={"min_position": 10**12})
    assert answer.status_code == 422 and "beyond" in answer.text


def test_a_31_mb_batch_is_stored_in_seconds_on_every_backend(system: System):
    """PostgreSQL used to sit in ClientRead holding the events table lock, forever (issue 7, defect 1)."""
    batch = [Touchpoint(**good(i, f"c{i % 50}", properties={"blob": "x" * 31_000})) for i in range(1000)]
    done: list = []
    writer = threading.Thread(target=lambda: done.append(system.record(batch)), daemon=True)
    writer.start()
    writer.join(60)
    assert done, "the write did not finish within 60 s"
    assert sum(r.outcome.value == "recorded" for r in done[0].results) == 1000
    follow = system.record([Touchpoint(**good(5000, "next"))])  # and the store is not left locked
    assert follow.position > done[0].position


def test_docs_pages_load_only_same_origin_assets(client: TestClient):
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html.text)
        scripts = [a for a in assets if a.endswith((".js", ".css"))]
        assert scripts, f"{page} loads no script or style?"
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), f"{page} loads {asset} from elsewhere"
            assert client.get(asset).status_code == 200, asset
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text


def test_logs_name_routes_not_the_customer_keys_in_paths(client: TestClient, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    client.post("/touchpoints", json=good(1, "jane@example.com", actor="Jane Doe"))
    answer = client.get("/customers/jane@example.com/stages")
    assert answer.headers["x-request-id"]
    client.get("/customers/nobody@example.com/history")
    ours = [r for r in caplog.records if not r.name.startswith("httpx")]  # the test's own client logs URLs
    text = "\n".join(r.getMessage() for r in ours)
    assert "GET /customers/{customer_id}/stages" in text
    assert "jane" not in text.lower() and "nobody@" not in text


HOSTILE_FIELDS = [  # (field of the touchpoint, hostile value): each must fail its own item only
    ("customer_id", "a\x00b"), ("customer_id", "\ud800"), ("touchpoint_id", "\udfff"),
    ("occurred_at", "9999-12-31T23:59:59-14:00"), ("occurred_at", "0001-01-01T00:00:00+14:00"),
    ("properties", {"k": "\ud800"}), ("properties", json.loads('{"a":' * 40 + "1" + "}" * 40)),
]


def _segment(t: dict) -> dict:
    return {"type": "track", "event": t["type"], "userId": t["customer_id"], "messageId": t["touchpoint_id"],
            "timestamp": t["occurred_at"], "properties": t.get("properties", {})}


def _cloudevent(t: dict) -> dict:
    return {"specversion": "1.0", "id": t["touchpoint_id"], "source": "crm", "type": "x", "data": t}


@pytest.mark.parametrize(("path", "wrap", "content_type"), [
    ("/v1/batch", lambda items: {"batch": [_segment(t) for t in items]}, "application/json"),
    ("/cloudevents", lambda items: [_cloudevent(t) for t in items], "application/cloudevents-batch+json"),
], ids=["segment", "cloudevents"])
def test_hostile_items_in_the_new_intakes_fail_alone(client: TestClient, path, wrap, content_type):
    items = [good(0)] + [{**good(i + 1), field: value} for i, (field, value) in enumerate(HOSTILE_FIELDS)]
    body = json.dumps(wrap(items)).encode()  # lone surrogates travel as \\ud800 escapes, as a client sends them
    answer = client.post(path, content=body, headers={"content-type": content_type})
    assert answer.status_code == 200, answer.text
    out = answer.json()
    stored = out["recorded"] if path == "/v1/batch" else out["counts"]["recorded"]
    assert stored == 1, out
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000  # under Segment's 500 KB, far deeper than JSON reads
    assert client.post(path, content=deep, headers={"content-type": content_type}).status_code == 400
    assert_still_works(client)
