"""The HTTP API end to end, on SQLite and PostgreSQL, with the projections running in the background."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from tests.factories import B2B_DEAL, b2b_deal, payload


def test_b2b_deal_in_shuffled_order_with_duplicates(client: TestClient):
    deal = b2b_deal("globex")
    rng = random.Random(4)
    arrival = deal + rng.sample(deal, 6)
    rng.shuffle(arrival)
    first = client.post("/touchpoints/batch", json=arrival[:10]).json()
    second = client.post("/touchpoints/batch", json=arrival[10:]).json()
    outcomes = [r["outcome"] for r in first["results"] + second["results"]]
    assert outcomes.count("recorded") == len(deal) and outcomes.count("duplicate") == 6

    stages = client.get("/customers/globex/stages", params={"min_position": second["position"]}).json()
    assert stages["buyer"]["stage"] == "Purchase"
    assert stages["seller"]["stage"] == "Closing"
    assert stages["awareness"]["stage"] == "Purchase"
    assert stages["buyer"]["cause"] == {"touchpoint_id": "d15", "type": "contract_signed"}
    assert stages["buyer"]["since"] == "2026-05-21T09:00:00Z"
    assert stages["next_message"]["id"] == "purchase-onboarding"

    history = client.get("/customers/globex/history").json()
    assert [t["touchpoint_id"] for t in history["touchpoints"]] == [i for i, _, _ in B2B_DEAL]
    seller = [(t["from_stage"], t["to_stage"], t["skipped"]) for t in history["transitions"] if t["journey"] == "seller"]
    assert seller == [
        (None, "Prospecting", []),
        ("Prospecting", "Building Rapport", []),
        ("Building Rapport", "Qualifying", []),
        ("Qualifying", "Presenting", []),
        ("Presenting", None, []),  # deal lost: the seller's journey restarts
        (None, "Qualifying", ["Prospecting", "Building Rapport"]),
        ("Qualifying", "Presenting", []),
        ("Presenting", "Closing", []),
    ]
    restart = next(t for t in history["transitions"] if t["restart"] and t["journey"] == "buyer")
    assert restart["touchpoint_type"] == "deal_lost" and restart["from_stage"] == "Negotiation"

    before_loss = client.get("/customers/globex/stages", params={"as_of": "2026-03-16T00:00:00Z"}).json()
    assert (before_loss["buyer"]["stage"], before_loss["seller"]["stage"], before_loss["awareness"]["stage"]) == (
        "Negotiation", "Presenting", "Evaluating",
    )
    after_loss = client.get("/customers/globex/stages", params={"as_of": "2026-04-10T00:00:00+00:00"}).json()
    assert after_loss["buyer"]["stage"] is None and after_loss["seller"]["stage"] is None
    assert after_loss["awareness"]["stage"] == "Evaluating"
    assert after_loss["next_message"]["id"] == "evaluating-case-study"


def test_next_message_skips_messages_already_sent(client: TestClient):
    client.post("/touchpoints", json=payload("t1", "email_opened", 0))
    sent = client.post("/touchpoints", json=payload("t2", "message_sent", 1, properties={"message_id": "aware-benefits"}))
    body = client.get("/customers/acme/stages", params={"min_position": sent.json()["position"]}).json()
    assert body["awareness"]["stage"] == "Aware"
    assert body["next_message"]["id"] == "aware-ideal-customer"


def test_single_touchpoint_status_codes(client: TestClient):
    body = payload("t1", "demo_delivered", 0)
    assert client.post("/touchpoints", json=body).status_code == 201
    again = client.post("/touchpoints", json=body)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    changed = client.post("/touchpoints", json={**body, "channel": "meeting"})
    assert changed.status_code == 409
    assert "already recorded with different content" in changed.json()["detail"]
    unknown = client.post("/touchpoints", json=payload("t2", "hologram_seen", 0))
    assert unknown.status_code == 201
    assert unknown.json()["known_type"] is False
    assert "moves no stage" in unknown.json()["detail"]


def test_invalid_touchpoint_is_422_with_field_and_reason_and_stores_nothing(client: TestClient):
    response = client.post("/touchpoints", json={**payload("t1", "email_opened", 0), "occurred_at": "2999-01-01T00:00:00Z"})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "occurred_at"]
    assert "24 hours in the future" in detail["msg"]
    assert client.get("/customers/acme/history").status_code == 404


def test_batch_records_the_valid_items_and_reports_each(client: TestClient):
    items = [
        payload("ok1", "email_opened", 0),
        {**payload("bad1", "email_opened", 0), "channel": "pigeon"},
        payload("ok1", "email_opened", 0),
        {**payload("ok1", "email_opened", 0), "source": "other"},
        {"customer_id": "acme"},
    ]
    response = client.post("/touchpoints/batch", json=items)
    assert response.status_code == 200
    body = response.json()
    assert [r["outcome"] for r in body["results"]] == ["recorded", "invalid", "duplicate", "conflict", "invalid"]
    assert body["results"][1]["errors"][0]["field"] == "channel"
    assert {e["field"] for e in body["results"][4]["errors"]} >= {"touchpoint_id", "type", "occurred_at"}
    assert body["counts"] == {"recorded": 1, "duplicate": 1, "conflict": 1, "invalid": 2}
    history = client.get("/customers/acme/history", params={"min_position": body["position"]}).json()
    assert [t["touchpoint_id"] for t in history["touchpoints"]] == ["ok1"]


def test_batch_limits(client: TestClient):
    assert client.post("/touchpoints/batch", json=[]).status_code == 422
    too_many = [payload(f"t{n}", "email_opened", 0) for n in range(1001)]
    assert client.post("/touchpoints/batch", json=too_many).status_code == 422
    assert client.post("/touchpoints/batch", json={"not": "a list"}).status_code == 422


def test_unknown_customer_is_404_with_a_clear_body(client: TestClient):
    for path in ("/customers/nobody/stages", "/customers/nobody/history"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "no touchpoint has been recorded for this customer key (or it was erased)"}
    assert client.get("/customers/nobody/stages", params={"as_of": "2026-01-01T00:00:00Z"}).status_code == 404


def test_segments_paginate_and_validate(client: TestClient):
    batch = [payload(f"t{n}", "pricing_page_viewed", 0, customer=f"c{n:03d}") for n in range(25)]
    position = client.post("/touchpoints/batch", json=batch).json()["position"]
    client.get("/customers/c000/stages", params={"min_position": position})
    seen, cursor = [], None
    while True:
        params = {"awareness": "Interested", "buyer": "not_started", "limit": 10}
        page = client.get("/segments", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["customer_id"] for c in page["customers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"c{n:03d}" for n in range(25)]  # each once, in record-id order (stable)
    bad = client.get("/segments", params={"awareness": "Curious"})
    assert bad.status_code == 422 and "is not a stage of the awareness journey" in bad.json()["detail"][0]["msg"]
    assert bad.json()["detail"][0]["loc"] == ["query", "awareness"] and "Curious" not in bad.text  # named, not echoed
    assert client.get("/segments", params={"cursor": "%%%"}).status_code == 422
    summary = client.get("/segments/summary").json()
    assert summary["awareness"]["Interested"] == 25 and summary["awareness"]["Unaware"] == 0
    assert summary["buyer"]["not_started"] == 25


def test_playbook_health_and_openapi(client: TestClient):
    playbook = client.get("/playbook").json()
    assert playbook["evidence"]["contract_signed"] == {
        "buyer": "Purchase", "seller": "Closing", "awareness": "Purchase", "lead_funnel": "Convert",
        "relationship": "Onboarding",
    }
    assert playbook["version"] == 1 and len(playbook["fingerprint"]) == 16
    assert playbook["read_models_derived_under"] == playbook["fingerprint"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["projection_lag"] == 0
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/touchpoints/batch"]["post"]["description"].startswith("Record up to 1,000")


def test_liveness_and_readiness_answer_without_a_key_and_say_nothing_else(client: TestClient):
    from fastapi.testclient import TestClient as Keyless

    bare = Keyless(client.app)
    live, ready = bare.get("/livez"), bare.get("/readyz")
    assert (live.status_code, live.text, ready.status_code, ready.text) == (200, "ok\n", 200, "ready\n")
    assert bare.get("/health").status_code == 401  # the detail stays behind a key
    client.app.state.system.runner.stop()  # the projection this process keeps is stopped
    stopped = bare.get("/readyz")
    assert stopped.status_code == 503 and stopped.text == "not ready\n"
    assert bare.get("/livez").status_code == 200


def test_a_query_parameter_given_twice_is_refused_not_read_as_its_last_value(client: TestClient):
    answer = client.get("/analytics/funnel", params=[("journey", "buyer"), ("channel", "web"), ("channel", "email")])
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "channel"] and "more than once" in answer.json()["detail"][0]["msg"]
    assert client.get("/analytics/funnel", params={"journey": "buyer", "channel": "web"}).status_code == 200


def test_a_structured_cloudevent_is_read_as_structured_whatever_ce_headers_come_with_it(client: TestClient):
    event = {"specversion": "1.0", "id": "ce-1", "source": "crm", "type": "touchpoint",
             "data": payload("ce-structured", "demo_requested", 1, customer="initech")}
    headers = {"Content-Type": "application/cloudevents+json", "ce-specversion": "1.0", "ce-id": "other", "ce-source": "x",
               "ce-type": "y"}
    answer = client.post("/cloudevents", json=event, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["touchpoint_id"] == "ce-structured" and answer.json()["customer_id"] == "initech"
    wrong = client.post("/cloudevents", json=event, headers={**headers, "ce-specversion": "2.0"})
    assert wrong.status_code == 422 and "specversion" in wrong.text
    batch = client.post("/cloudevents", json=[event], headers={**headers, "Content-Type": "application/cloudevents-batch+json",
                                                               "ce-specversion": "2.0"})
    assert batch.status_code == 400 and "ce-specversion" in batch.text


def test_spend_periods_are_what_the_document_says(client: TestClient):
    document = client.get("/openapi.json").json()
    period = document["components"]["schemas"]["SpendIn"]["properties"]["period"]
    assert "pattern" in period
    for text, status in [("2026-03", 201), ("2026-03-01/2026-03-10", 201), (" 2026-03", 422), ("2026-03\n", 422),
                         ("2026-02-30/2026-03-01", 422), ("2026-03-10/2026-03-01", 422)]:
        answer = client.post("/campaigns/spring/spend", json={"period": text, "amount": "1.50", "currency": "EUR"})
        assert answer.status_code == status, (text, answer.text)
    assert client.post("/campaigns/spring/spend", json={"period": "2026-03", "amount": "1e3", "currency": "EUR"}).status_code == 422


def test_a_blank_campaign_name_is_refused_when_read_as_when_written(client: TestClient):
    """The document's pattern for {campaign} says not blank; reading spend refuses a blank name too."""
    for path in ("/campaigns/%09%C2%85/spend", "/campaigns/%20/spend"):
        answer = client.get(path)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["path", "campaign"]
    assert client.get("/campaigns/spring/spend").status_code == 200


def test_an_integer_query_parameter_is_written_as_one(client: TestClient):
    """The document says integer: "0.0" or "1e2" is refused, not read as 0 or 100 as pydantic would."""
    for path, name in (("/customers/nobody/stages?min_position=0.0", "min_position"), ("/segments?limit=1e2", "limit"),
                       ("/customers/nobody/history?limit=5.0", "limit")):
        answer = client.get(path)
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", name], (path, answer.text)
    assert client.get("/segments?limit=5").status_code == 200
