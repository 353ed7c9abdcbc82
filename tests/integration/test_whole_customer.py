"""The right message for the whole customer, through the HTTP API on SQLite and PostgreSQL (issue 20)."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.factories import payload


def post(client: TestClient, items: list[dict]) -> int:
    answer = client.post("/touchpoints/batch", json=items)
    assert answer.status_code == 200, answer.text
    assert all(r["outcome"] in ("recorded", "duplicate") for r in answer.json()["results"]), answer.text
    return answer.json()["position"]


def get(client: TestClient, path: str, position: int, **params) -> dict:
    answer = client.get(path, params={"min_position": position, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def recommendation(client: TestClient, customer: str, position: int, **params) -> dict:
    return get(client, f"/customers/{customer}/stages", position, **params)["recommendation"]


def test_a_churned_customer_is_a_former_customer_with_a_win_back_message(client: TestClient):
    ada = "ada@example.com"
    position = post(client, [
        payload("a1", "lead_captured", 0, ada), payload("a2", "contract_signed", 10, ada),
        payload("a3", "renewal_signed", 40, ada), payload("a4", "customer_churned", 60, ada),
    ])
    stages = get(client, f"/customers/{ada}/stages", position)
    assert stages["awareness"]["stage"] == "Purchase"  # not a stranger
    assert stages["journeys"]["relationship"]["stage"] == "Former customer"
    chosen = stages["recommendation"]
    assert (chosen["rule"], chosen["message"]["id"]) == ("former customer", "winback-whats-new")
    assert stages["next_message"]["id"] == "winback-whats-new"
    # As it was before the churn, by replay: the loyal customer's growth offer.
    before = recommendation(client, ada, position, as_of="2026-04-30T00:00:00Z")  # T0 is 2026-03-02
    assert before["rule"] == "loyalty"
    position = post(client, [payload("a5", "order_placed", 90, ada)])  # won back
    assert recommendation(client, ada, position)["rule"] == "onboarding"
    history = get(client, f"/customers/{ada}/history", position)["transitions"]
    assert [t["to_stage"] for t in history if t["journey"] == "relationship"] == [
        "Onboarding", "Loyalty", "Former customer", "Onboarding"]


def test_an_open_complaint_gets_the_service_message_and_no_upsell_until_evaluated(client: TestClient):
    bo = "bo@example.com"
    position = post(client, [
        payload("b1", "contract_signed", 0, bo), payload("b2", "renewal_signed", 30, bo),
        payload("b3", "complaint_filed", 40, bo, case_id="C-10", channel="support"),
    ])
    chosen = recommendation(client, bo, position)
    assert (chosen["rule"], chosen["kind"], chosen["message"]["id"]) == ("open complaint", "service", "complaint-acknowledged")
    assert chosen["matched"] == ["complaints: case C-10 at Receipt"] and "loyalty" in chosen["held_back"]
    assert "C-10" in chosen["reason"]
    position = post(client, [payload("b4", "complaint_answered", 41, bo, case_id="C-10"),
                             payload("b5", "complaint_evaluated", 42, bo, case_id="C-10")])
    assert recommendation(client, bo, position)["rule"] == "loyalty"
    # Evaluated without processing or a control: the skipped steps are defects of the case.
    case = get(client, "/cases/C-10", position)["journeys"]["complaints"]
    assert case["defects"] == ["Processing skipped: every stage is required", "Control skipped: every stage is required"]


def test_an_unsubscribed_customer_gets_no_marketing_and_a_resubscribed_one_does(client: TestClient):
    cy = "cy@example.com"
    position = post(client, [payload("c1", "pricing_page_viewed", 0, cy),
                             payload("c2", "unsubscribed", 1, cy, channel="email")])
    chosen = recommendation(client, cy, position)
    assert chosen["message"] is None and chosen["rule"] is None
    assert "unsubscribed (email)" in chosen["suppressed"][0]
    position = post(client, [payload("c3", "subscribed", 2, cy, channel="email")])
    assert recommendation(client, cy, position)["message"]["id"] == "interested-roi"
    position = post(client, [payload("c4", "message_sent", 3, cy, channel="email", properties={"message_id": "interested-roi"})])
    assert recommendation(client, cy, position)["message"]["id"] == "interested-business-case"


def test_a_contact_in_an_early_and_a_closed_deal_gets_no_onboarding_and_sees_both(client: TestClient):
    di = "di@example.com"
    position = post(client, [
        payload("d1", "contract_signed", 0, di, deal_id="D-1", account_id="ACME", buying_role="decider"),
        payload("d2", "call_connected", 5, di, deal_id="D-2", account_id="ACME"),
        payload("d3", "complaint_filed", 6, di, case_id="C-7"),
        payload("d4", "complaint_processing_started", 7, di, case_id="C-7"),
        payload("d5", "complaint_answered", 8, di, case_id="C-7"),
        payload("d6", "complaint_resolution_checked", 9, di, case_id="C-7"),
        payload("d7", "complaint_evaluated", 10, di, case_id="C-7"),
    ])
    stages = get(client, f"/customers/{di}/stages", position)
    assert stages["recommendation"]["rule"] == "deal getting to know"
    assert stages["recommendation"]["matched"] == ["deal_pipeline: deal D-2 at Building Rapport"]
    assert not stages["recommendation"]["message"]["id"].startswith("purchase")
    members = {(m["scope"], m["id"]): m for m in stages["memberships"]}
    assert set(members) == {("deal", "D-1"), ("deal", "D-2"), ("account", "ACME"), ("case", "C-7")}
    assert members[("deal", "D-1")]["buying_role"] == "decider"
    assert members[("deal", "D-1")]["journeys"]["deal_pipeline"]["stage"] == "Closing"
    assert members[("case", "C-7")]["journeys"]["complaints"]["stage"] == "Evaluation"
    assert members[("case", "C-7")]["journeys"]["complaints"]["defects"] == []  # every step taken
    timeline = get(client, f"/customers/{di}/timeline", position)
    assert {(m["scope"], m["id"]) for m in timeline["memberships"]} == set(members)
    assert timeline["recommendation"]["rule"] == "deal getting to know"


def test_segments_and_their_export_carry_the_recommendation_and_why(client: TestClient):
    position = post(client, [payload("e1", "email_opened", 0, "ed@example.com"),
                             payload("e2", "email_opened", 0, "flo@example.com"),
                             payload("e3", "unsubscribed", 1, "flo@example.com", channel="email")])
    get(client, "/customers/flo@example.com/stages", position)  # segments take no min_position: wait here
    page = get(client, "/segments", position, awareness="Aware")
    chosen = {m["customer_id"]: m["recommendation"] for m in page["customers"]}
    assert chosen["ed@example.com"]["rule"] == "aware" and "rule 'aware'" in chosen["ed@example.com"]["reason"]
    assert chosen["flo@example.com"]["message"] is None and chosen["flo@example.com"]["suppressed"]
    export = client.get("/segments/export", params={"awareness": "Aware", "format": "csv"})
    rows = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(export.text))}
    assert (rows["ed@example.com"]["next_message_id"], rows["ed@example.com"]["next_message_rule"]) == ("aware-benefits", "aware")
    assert rows["flo@example.com"]["next_message_id"] == "" and "consent suppressed" in rows["flo@example.com"]["next_message_reason"]


def test_cost_per_lead_counts_only_lead_funnel_entries(client: TestClient):
    spring = {"campaign": "spring"}
    position = post(client, [
        payload("f1", "email_opened", 0, "gil@example.com", **spring),  # touched, no lead
        payload("f2", "lead_captured", 1, "hal@example.com", **spring),  # a lead
        payload("f3", "contract_signed", 20, "hal@example.com"),  # hal converted and became a customer
        payload("f4", "inquiry_received", 2, "ivy@example.com", **spring),  # a lead
    ])
    answer = client.post("/campaigns/spring/spend", json={"period": "2026-03", "amount": "300", "currency": "EUR"})
    assert answer.status_code == 201, answer.text
    get(client, "/customers/ivy@example.com/stages", position)
    found = client.get("/analytics/cost", params={"journey": "lead_funnel", "from": "2026-03-01T00:00:00Z",
                                                  "to": "2026-04-01T00:00:00Z"})
    assert found.status_code == 200, found.text
    spring_row = next(c for c in found.json()["campaigns"] if c["campaign"] == "spring")
    assert (spring_row["leads"], spring_row["converted"], spring_row["customers"]) == (2, 1, 1)
    assert (spring_row["conversion_rate"], spring_row["lead_to_customer_rate"]) == (0.5, 0.5)
    assert spring_row["cost_per_lead"] == {"EUR": "150.00"}
    assert all(c["campaign"] != "(none)" for c in found.json()["campaigns"])  # hal's purchase is no new lead


def test_vbant_five_criteria_and_a_missing_decider_warned_about_at_evaluation(client: TestClient):
    deal = {"deal_id": "D-9", "account_id": "GLOBEX"}
    position = post(client, [
        payload("g1", "qualification_assessed", 0, "jo@globex", criteria=["budget", "authority", "need"], buying_role="buyer", **deal),
    ])
    assert get(client, "/deals/D-9", position)["journeys"]["deal_pipeline"]["stage"] is None  # three of five
    position = post(client, [
        payload("g2", "qualification_assessed", 1, "jo@globex", criteria=["vision", "timeframe"], **deal),
        payload("g3", "trial_started", 2, "jo@globex", **deal),
    ])
    assert get(client, "/deals/D-9", position)["journeys"]["deal_pipeline"]["stage"] == "Qualifying"
    account = get(client, "/accounts/GLOBEX", position)
    assert account["journeys"]["account_buying"]["stage"] == "Evaluation"
    assert account["warnings"] == ["no decider engaged while the account is in Evaluation (Account buyer's journey)"]
