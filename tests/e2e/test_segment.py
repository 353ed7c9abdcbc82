"""The Segment-compatible intake driven by Segment's own Python SDK (segment-analytics-python)
against a served API, gzip on and off, and by RudderStack's (rudder-sdk-python), which speaks
the same API; the error paths with plain HTTP, since the SDKs never send them."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from segment.analytics.request import post as sdk_post

from api.main import create_app
from journeys.storage.api_keys import KeyStore, Role
from projections.system import System
from tests.serving import serve

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
VISITOR, BUYER = "anon-7f3a", "buyer@example.com"


@pytest.fixture
def served(system: System):
    system.runner.start()
    key = KeyStore(system.view, cache_seconds=0).create("segment-source", Role.publisher)
    with serve(create_app(system=system)) as base:
        yield base, key


def stored(system: System, customer: str) -> dict:
    return {t.touchpoint_id: t for t in system.app.replay(customer).touchpoints}


@pytest.mark.parametrize(("sdk", "compressed"), [(SegmentClient, False), (SegmentClient, True), (RudderClient, True)],
                         ids=["segment-plain", "segment-gzip", "rudderstack-gzip"])
def test_the_python_sdk_records_page_track_and_screen_calls(served, system: System, sdk, compressed):
    base, key = served
    errors = []
    client = sdk(key, host=base, gzip=compressed, on_error=lambda e, batch: errors.append(e),
                 max_retries=1, upload_interval=0.1)
    client.page(anonymous_id=VISITOR, name="Pricing", properties={"url": "https://example.com/pricing"},
                timestamp=T, message_id="m1")
    client.track(user_id=BUYER, event="Demo Completed", properties={"deal_id": "D-9", "seats": 40},
                 context={"campaign": {"name": "spring-launch", "medium": "email"}},
                 timestamp=T + timedelta(days=1), message_id="m2")
    client.track(user_id=BUYER, event="Trial Started", timestamp=T + timedelta(days=2), message_id="m3")
    client.screen(user_id=BUYER, name="Onboarding", timestamp=T + timedelta(days=3), message_id="m4")
    client.identify(user_id=BUYER, traits={"plan": "pro"}, message_id="m5")
    client.flush()
    client.shutdown()
    assert errors == []

    visitor = stored(system, VISITOR)
    assert visitor["m1"].type == "pricing_page_viewed" and visitor["m1"].channel == "web"
    assert visitor["m1"].occurred_at == T and visitor["m1"].properties["name"] == "Pricing"
    buyer = stored(system, BUYER)
    assert sorted(buyer) == ["m2", "m3", "m4"]
    demo = buyer["m2"]
    assert (demo.type, demo.channel, demo.campaign, demo.deal_id) == ("demo_delivered", "email", "spring-launch", "D-9")
    assert demo.properties["seats"] == 40 and demo.source == "segment/analytics-python"
    assert (buyer["m3"].type, buyer["m4"].type, buyer["m4"].channel) == ("trial_started", "website_visited", "product")
    system.runner.catch_up()
    stages = {j: p.stage for j, p in system.view.customer(str(system.keyring.find(BUYER)))["stages"].positions.items()}
    assert stages["buyer"] == "Evaluation" and stages["seller"] == "Presenting"


def test_a_retried_batch_is_a_duplicate_even_with_a_new_sent_at(served, system: System):
    base, key = served
    batch = [{"type": "track", "event": "Webinar Attended", "userId": BUYER, "messageId": "w1",
              "timestamp": T.isoformat(), "context": {"library": {"name": "analytics-python"}}}]
    first = sdk_post(key, host=base, batch=batch, sentAt=datetime.now(UTC).isoformat()).json()
    again = sdk_post(key, host=base, gzip=True, batch=batch).json()
    assert first["recorded"] == 1 and again["duplicates"] == 1 and again["recorded"] == 0
    assert stored(system, BUYER)["w1"].type == "event_attended"


def test_a_skewed_client_clock_is_corrected_as_segment_does(served, system: System):
    base, key = served
    now = datetime.now(UTC).replace(microsecond=0)
    client_clock = now - timedelta(hours=2)  # the device is two hours behind
    message = {"type": "track", "event": "Email Opened", "anonymousId": VISITOR, "messageId": "s1",
               "timestamp": (client_clock - timedelta(minutes=10)).isoformat(), "sentAt": client_clock.isoformat()}
    answer = requests.post(f"{base}/v1/track", json=message, auth=(key, ""), timeout=10)
    assert answer.status_code == 200 and answer.json()["success"] is True
    occurred = stored(system, VISITOR)["s1"].occurred_at
    assert abs(occurred - (now - timedelta(minutes=10))) <= timedelta(minutes=1)


def test_valid_messages_are_stored_and_the_rest_reported(served, system: System):
    base, key = served
    body = {"writeKey": key, "batch": [
        {"type": "track", "event": "Trial Started", "userId": BUYER, "messageId": "ok1", "timestamp": T.isoformat()},
        {"type": "track", "userId": BUYER, "messageId": "bad1"},                                     # no event
        {"type": "track", "event": "Trial Started", "messageId": "bad2"},                            # no user
        {"type": "track", "event": "Trial Started", "userId": BUYER, "messageId": "bad3", "timestamp": "yesterday"},
        {"type": "track", "event": "42 things", "userId": BUYER, "messageId": "bad4"},               # not a type name
        {"type": "teleport", "userId": BUYER, "messageId": "bad5"},
        {"type": "track", "event": "x", "userId": BUYER, "messageId": "big", "properties": {"p": "x" * 40_000}},
        {"type": "group", "userId": BUYER, "groupId": "acme", "messageId": "g1"},
        {"type": "alias", "userId": BUYER, "previousId": VISITOR, "messageId": "a1"},
    ]}
    answer = requests.post(f"{base}/v1/batch", json=body, timeout=10)  # the key in the body alone
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["success"] is True and out["recorded"] == 1
    reasons = {r["messageId"]: r["reason"] for r in out["rejected"]}
    assert sorted(reasons) == ["bad1", "bad2", "bad3", "bad4", "bad5", "big"]
    assert "event" in reasons["bad1"] and "userId" in reasons["bad2"] and reasons["bad3"].startswith("timestamp")
    assert reasons["bad4"].startswith("event") and "32768" in reasons["big"]
    assert "not a call this intake takes" in reasons["bad5"] and "teleport" not in reasons["bad5"]
    assert [i["messageId"] for i in out["ignored"]] == ["g1"] and out["linked"] == 1  # the alias
    assert list(stored(system, BUYER)) == ["ok1"]


@pytest.mark.parametrize(("headers", "body", "status", "code"), [
    ({"Content-Type": "application/json"}, b'{"batch": {}}', 400, "invalid_batch"),
    ({"Content-Type": "application/json"}, b"[1, 2]", 400, "invalid_batch"),
    ({"Content-Type": "application/json"}, b'{"batch": [', 400, "invalid_json"),
    ({"Content-Encoding": "gzip"}, b"not gzip at all", 400, "invalid_gzip"),
    ({"Content-Encoding": "br"}, b"{}", 415, "unsupported_encoding"),
    ({"Content-Encoding": "gzip"}, gzip.compress(b" " * 10_000_000), 413, "batch_too_large"),  # a gzip bomb
    ({}, json.dumps({"batch": [{"type": "track"}] * 60_000}).encode(), 413, "batch_too_large"),
])
def test_a_malformed_batch_is_refused_with_the_code_the_sdks_log(served, headers, body, status, code):
    base, key = served
    answer = requests.post(f"{base}/v1/batch", data=body, headers=headers, auth=(key, ""), timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["success"] is False and answer.json()["message"]


def test_no_key_or_a_wrong_role_is_refused_before_the_body_is_judged(served, system: System):
    base, _ = served
    marketer = KeyStore(system.view, cache_seconds=0).create("not-a-publisher", Role.marketer)
    assert requests.post(f"{base}/v1/batch", data=b"{not json", timeout=10).status_code == 401
    assert requests.post(f"{base}/v1/batch", json={"writeKey": "jrn_wrong", "batch": []}, timeout=10).status_code == 401
    assert requests.post(f"{base}/v1/batch", data=b"{", auth=(marketer, ""), timeout=10).status_code == 403


def test_anonymous_visits_an_identify_and_a_deal_make_one_customer_until_unlinked(served, system: System, settings):
    from typer.testing import CliRunner

    from api.cli import app
    from tests.integration.test_cli import env_for

    base, key = served
    client = SegmentClient(key, host=base, gzip=True, max_retries=1, upload_interval=0.1)
    client.page(anonymous_id=VISITOR, name="Case Study", timestamp=T, message_id="v1")
    client.page(anonymous_id=VISITOR, name="Pricing", timestamp=T + timedelta(hours=1), message_id="v2")
    client.identify(user_id=BUYER, anonymous_id=VISITOR, traits={"plan": "pro"}, message_id="i1")
    client.track(user_id=BUYER, event="Signed Up", timestamp=T + timedelta(days=1), message_id="d1")
    client.track(user_id=BUYER, event="Demo Completed", timestamp=T + timedelta(days=2), message_id="d2")
    client.flush()
    client.shutdown()
    reader = {"Authorization": f"Bearer {KeyStore(system.view, cache_seconds=0).create('reader', Role.marketer)}"}

    def stages(who: str) -> dict:
        system.runner.catch_up()
        answer = requests.get(f"{base}/customers/{who}/stages", headers=reader, timeout=10)
        assert answer.status_code == 200, answer.text
        return {name: s["stage"] for name, s in answer.json()["journeys"].items()}

    merged = stages(VISITOR)
    assert merged == stages(BUYER)
    assert merged["buyer"] == "Evaluation" and merged["awareness"] == "Evaluating" and merged["seller"] == "Presenting"

    result = CliRunner().invoke(app, ["identities", "unlink", VISITOR, "--by", "test"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    visitor, buyer = stages(VISITOR), stages(BUYER)
    assert (visitor["buyer"], visitor["seller"], visitor["awareness"]) == ("Evaluation", None, "Evaluating")
    assert (buyer["seller"], buyer["lead_funnel"]) == ("Presenting", "Identify")
    again = CliRunner().invoke(app, ["identities", "unlink", VISITOR], env=env_for(settings))
    assert again.exit_code == 1 and "not linked" in again.output


def test_cors_answers_only_the_configured_sites_and_only_on_the_segment_intake(system: System, settings):
    from fastapi.testclient import TestClient

    site, other = "https://www.example.com", "https://evil.example.net"
    key = KeyStore(system.view, cache_seconds=0).create("site", Role.publisher)
    configured = settings.model_copy(update={"segment_cors_origins": [site]})
    with TestClient(create_app(configured, system=system)) as client:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
        allowed = client.options("/v1/t", headers={"Origin": site, **preflight})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == site
        assert client.options("/v1/t", headers={"Origin": other, **preflight}).status_code == 400
        sent = client.post("/v1/t", headers={"Origin": site, "Content-Type": "text/plain"}, content=(
            '{"type": "track", "event": "Trial Started", "anonymousId": "site-visitor", "messageId": "c1", "writeKey": "%s"}' % key))
        assert sent.status_code == 200 and sent.headers["access-control-allow-origin"] == site
        elsewhere = client.get("/health", headers={"Origin": site, "Authorization": f"Bearer {key}"})
        assert "access-control-allow-origin" not in elsewhere.headers
