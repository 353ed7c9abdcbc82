"""Input an attacker would send: bounded, refused with a clear 4xx, and nothing stored is harmed.

Each case here answered 500, hung, or poisoned the projection before (issue 7).
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import quote

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
    assert answer.status_code == 409 and "beyond" in answer.text


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


HUGE_INT = "9" * 5000  # beyond Python's 4,300-digit limit on reading integers


@pytest.mark.parametrize(("path", "body", "content_type"), [
    ("/touchpoints/batch", f'[{{"touchpoint_id": "t1", "n": {HUGE_INT}}}]', "application/json"),
    ("/v1/batch", f'{{"batch": [{{"type": "track", "userId": "u", "n": {HUGE_INT}}}]}}', "application/json"),
    ("/cloudevents", f'{{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": {{"n": {HUGE_INT}}}}}',
     "application/cloudevents+json"),
    ("/cloudevents", json.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                                 "data_base64": __import__("base64").b64encode(f'{{"n": {HUGE_INT}}}'.encode()).decode()}),
     "application/cloudevents+json"),
    ("/cloudevents", json.dumps({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": f'{{"n": {HUGE_INT}}}'}),
     "application/cloudevents+json"),
    ("/cloudevents", f'[{{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": {{"n": {HUGE_INT}}}}}]',
     "application/cloudevents-batch+json"),
    ("/cloudevents", f'{{"n": {HUGE_INT}}}', "application/json"),
], ids=["touchpoints", "segment", "ce-data", "ce-data-base64", "ce-data-string", "ce-batch", "ce-binary"])
def test_integers_too_long_to_read_are_a_4xx_in_every_intake(client: TestClient, path, body, content_type):
    headers = {"content-type": content_type, "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "s", "ce-type": "t"}
    answer = client.post(path, content=body.encode(), headers=headers)
    assert 400 <= answer.status_code < 500 or (answer.status_code == 200 and "digits" in answer.text), answer.text[:500]
    assert HUGE_INT[:100] not in answer.text
    assert_still_works(client)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_numbers_that_cannot_be_stored_as_sent_are_refused_naming_the_property(client: TestClient, number):
    body = json.dumps(good(1))[:-1] + f', "properties": {{"plan": {{"score": {number}}}}}}}'
    answer = client.post("/touchpoints", content=body.encode(), headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "properties.plan.score is not a finite number" in answer.text
    batch = client.post("/touchpoints/batch", content=f"[{body}]".encode(), headers={"content-type": "application/json"})
    assert batch.status_code == 200 and batch.json()["results"][0]["outcome"] == "invalid"
    assert_still_works(client)


@pytest.mark.parametrize("when", ["1773151200", "1773151200.5", "2026-03-10", "2026-03-10T14:00:00"])
def test_a_time_that_is_not_rfc_3339_with_a_zone_is_refused(client: TestClient, when):
    assert client.post("/touchpoints", json={**good(1), "occurred_at": when}).status_code == 422
    assert client.get("/customers/acme/stages", params={"as_of": when}).status_code == 422
    assert client.get("/analytics/funnel", params={"journey": "buyer", "from": when}).status_code == 422


def test_customer_keys_are_one_spelling_in_unicode_nfc_and_never_padded(client: TestClient):
    composed, decomposed = "jos\u00e9@example.com", "jose\u0301@example.com"
    first = client.post("/touchpoints", json=good(1, composed))
    second = client.post("/touchpoints", json=good(2, decomposed))
    assert first.status_code == second.status_code == 201
    assert first.json()["record_id"] == second.json()["record_id"] if "record_id" in first.json() else True
    stages = client.get(f"/customers/{decomposed}/stages", params={"min_position": second.json()["position"]})
    assert stages.status_code == 200 and stages.json()["record_id"] == client.get(f"/customers/{composed}/stages").json()["record_id"]
    for padded in (" acme", "acme ", "acme\t"):
        answer = client.post("/touchpoints", json=good(3, padded))
        assert answer.status_code == 422 and "white space" in answer.text, answer.text
        assert client.get(f"/customers/{quote(padded, safe='')}/stages").status_code == 422
    assert client.delete(f"/customers/{decomposed}").status_code == 200  # erasure by either spelling
    assert client.get(f"/customers/{composed}/stages").status_code == 404


def test_errors_name_the_field_never_the_value_sent(client: TestClient):
    secret = "jane.doe@example.com"
    answers = [
        client.post("/touchpoints", json={**good(1), "properties": {secret: 1, "k\x00": 2}}),
        client.post("/touchpoints", json={**good(1), "properties": {"k": "v\x00" + secret}}),
        client.post("/touchpoints", json={**good(1), "occurred_at": "9999-12-31T23:59:59-14:00"}),
        client.get("/segments", params={"journey": "buyer", "stage": f"' or 1=1 -- {secret}"}),
        client.get("/analytics/funnel", params={"journey": secret}),
        client.get("/analytics/funnel", params={"journey": "buyer", "campaign": secret + "\x00"}),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        assert secret not in answer.text and "1=1" not in answer.text and "9999" not in answer.text, answer.text
        assert "k\\u0000" not in answer.text and "k\x00" not in answer.text


@pytest.mark.parametrize("params", [
    {"journey": "buyer", "cohort": "9999-12-30/9999-12-31"}, {"journey": "buyer", "cohort": "9999-12"},
    {"journey": "buyer", "cohort": "0001-01-01/0001-01-02"}, {"journey": "buyer", "from": "9999-12-31T00:00:00Z"},
    {"journey": "buyer", "to": "9999-12-31T23:59:59Z"}, {"journey": "buyer", "from": "0001-01-01T00:00:00Z"},
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items() if k != "journey"))
def test_dates_at_the_ends_of_the_calendar_are_a_422_in_every_date_parameter(client: TestClient, params):
    paths = ["/analytics/funnel"] + ([] if "cohort" in params else ["/analytics/cost", "/analytics/attribution"])
    for path in paths:
        answer = client.get(path, params={**params, "stage": "Purchase"})
        assert answer.status_code == 422, (path, answer.text)
    for when in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"):
        for name in ("as_of", "known_at"):
            assert client.get("/customers/acme/stages", params={name: when}).status_code == 422
            assert client.get("/deals/d1/history", params={name: when}).status_code == 422
    assert client.post("/campaigns/c1/spend", json={"period": "9999-12", "amount": "1", "currency": "EUR"}).status_code == 422
    assert_still_works(client)


@pytest.mark.parametrize("path", [
    ("DELETE", "/keys/%00"), ("DELETE", "/keys/a%00b"), ("GET", "/customers/%00/stages"), ("DELETE", "/customers/%00"),
    ("GET", "/accounts/%00"), ("GET", "/deals/%00"), ("GET", "/deals/%00/history"), ("GET", "/cases/%00/timeline"),
    ("GET", "/campaigns/%00/spend"), ("POST", "/campaigns/%00/spend"), ("GET", "/records/%00/history"),
    ("GET", "/deals/%00/export"), ("GET", "/dashboard/assets/%00"), ("GET", "/customers/%ED%A0%80/stages"),
])
def test_nul_or_a_lone_surrogate_in_any_path_parameter_is_a_4xx_on_every_backend(client: TestClient, path):
    method, url = path
    answer = client.request(method, url, json={"period": "2026-03", "amount": "1", "currency": "EUR"} if method == "POST" else None)
    assert 400 <= answer.status_code < 500, (url, answer.status_code, answer.text)
    assert_still_works(client)


def _post_raw(base: str, key: str, size: int, chunked: bool) -> bytes:
    """POST `size` bytes as a plain client does (send all, then read the answer); what it reads."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base)
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}".encode()
    head = (b"POST /touchpoints/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\n".encode() + framing + b"\r\n\r\n")
    piece = b" " * (1 << 20)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for _ in range(size // len(piece)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                got = sock.recv(65536)
                if not got:
                    break
                answer += got
            return answer
        except OSError as error:  # a reset: the client never sees the answer
            return f"{type(error).__name__}".encode()


def test_oversize_bodies_get_the_413_not_a_reset_sequential_and_parallel(system: System):
    """The server read nothing of a refused body and closed: the client, still sending, got a reset
    (1 in 12 for 100 MB posts) instead of the 413. Now the rest is read and discarded, within bounds,
    before the answer ends, as nginx's lingering close does."""
    from concurrent.futures import ThreadPoolExecutor

    from api.main import create_app
    from journeys.storage.api_keys import KeyStore, Role
    from tests.serving import serve

    key = KeyStore(system.view, cache_seconds=0).create("big-sender", Role.publisher)
    with serve(create_app(system=system)) as base:
        sequential = [_post_raw(base, key, 100 << 20, chunked=i % 2 == 1)[:12] for i in range(4)]
        assert sequential == [b"HTTP/1.1 413"] * 4, sequential
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(lambda i: _post_raw(base, key, 40 << 20, chunked=True)[:12], range(8)))
        assert parallel == [b"HTTP/1.1 413"] * 8, parallel
        assert_still_works_served(base, key)


def assert_still_works_served(base: str, key: str) -> None:
    import requests

    answer = requests.post(f"{base}/touchpoints", json=good(1), headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 201, answer.text
