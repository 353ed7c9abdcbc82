"""Journeys kept per deal, account and case, on SQLite and PostgreSQL (issue 8)."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from tests.factories import payload


def post(client: TestClient, items: list[dict]) -> int:
    answer = client.post("/touchpoints/batch", json=items)
    assert answer.status_code == 200, answer.text
    assert all(r["outcome"] in ("recorded", "duplicate") for r in answer.json()["results"]), answer.text
    return answer.json()["position"]


def get(client: TestClient, path: str, position: int) -> dict:
    answer = client.get(path, params={"min_position": position})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_one_contact_in_two_deals_at_different_seller_stages(client: TestClient):
    pat = "pat@buyer.example"
    position = post(client, [
        payload("a1", "lead_captured", 0, pat, deal_id="D-1"),
        payload("a2", "meeting_held", 1, pat, deal_id="D-1"),
        payload("b1", "lead_captured", 2, pat, deal_id="D-2"),
        payload("b2", "demo_delivered", 3, pat, deal_id="D-2"),
    ])
    first, second = get(client, "/deals/D-1", position), get(client, "/deals/D-2", position)
    assert first["journeys"]["deal_pipeline"]["stage"] == "Building Rapport"
    assert second["journeys"]["deal_pipeline"]["stage"] == "Presenting"
    # Presenting to a deal not qualified is allowed, and flagged.
    assert second["journeys"]["deal_pipeline"]["defects"] == [
        "Qualifying skipped: vision, budget, authority, need, timeframe not confirmed"
    ]
    presenting = next(t for t in second["transitions"] if t["to_stage"] == "Presenting")
    assert presenting["skipped"] == ["Building Rapport", "Qualifying"] and presenting["defects"]
    assert [c["customer_id"] for c in first["contacts"]] == [pat] == [c["customer_id"] for c in second["contacts"]]
    assert first["contacts"][0]["stages"]["seller"] == "Presenting"  # the contact's own stage spans both deals
    # The contact's own seller journey expects the same criteria: reached on evidence, flagged.
    seller = client.get(f"/customers/{pat}/stages").json()["seller"]
    assert seller["stage"] == "Presenting" and seller["criteria"] == []
    assert seller["defects"] == ["Qualifying skipped: vision, budget, authority, need, timeframe not confirmed"]
    assert client.get("/deals/D-404").status_code == 404


def test_an_accounts_stage_and_missing_roles_whatever_the_arrival_order(client: TestClient):
    def buying_centre(account: str) -> list[dict]:
        return [
            payload(f"{account}-1", "website_visited", 0, f"ann@{account}", account_id=account, buying_role="user"),
            payload(f"{account}-2", "requirements_shared", 1, f"ann@{account}", account_id=account),
            payload(f"{account}-3", "trial_started", 2, f"ben@{account}", account_id=account, buying_role="influencer"),
            payload(f"{account}-4", "quote_requested", 4, f"cy@{account}", account_id=account, buying_role="buyer"),
            payload(f"{account}-5", "case_study_viewed", 3, f"ben@{account}", account_id=account),
        ]

    answers = []
    for n, seed in enumerate([1, 2, 3]):
        account = f"acct-{n}"
        items = buying_centre(account)
        arrival = items + items[:2]  # duplicates too
        random.Random(seed).shuffle(arrival)
        position = 0
        for start in range(0, len(arrival), 3):
            position = max(position, post(client, arrival[start : start + 3]) or 0)  # a batch of repeats writes nothing
        found = get(client, f"/accounts/{account}", position)
        answers.append(found)
        assert found["journeys"]["account_buying"]["stage"] == "Negotiation"
        assert found["journeys"]["account_buying"]["cause"]["touchpoint_id"] == f"{account}-4"
        roles = {c["customer_id"].split("@")[0]: c["buying_role"] for c in found["contacts"]}
        assert roles == {"ann": "user", "ben": "influencer", "cy": "buyer"}
        assert found["missing_roles"] == ["decider", "gatekeeper"]
        assert found["warnings"] == ["no decider engaged while the account is in Negotiation (Account buyer's journey)"]
        assert found["touchpoint_count"] == 5
    shape = [[(t["journey"], t["from_stage"], t["to_stage"], t["touchpoint_id"][-1]) for t in a["transitions"]] for a in answers]
    assert shape[0] == shape[1] == shape[2]


def test_a_complaint_case_walked_through_its_five_stages(client: TestClient):
    steps = ["complaint_filed", "complaint_processing_started", "complaint_answered",
             "complaint_resolution_checked", "complaint_evaluated"]
    position = 0
    for n, step in enumerate(steps):
        position = post(client, [payload(f"c{n}", step, 10 + n, "unhappy@example.com", case_id="C-9", channel="support")])
        found = get(client, "/cases/C-9", position)
        assert found["journeys"]["complaints"]["stage"] == ["Receipt", "Processing", "Response", "Control", "Evaluation"][n]
    assert [t["to_stage"] for t in found["transitions"]] == ["Receipt", "Processing", "Response", "Control", "Evaluation"]
    segment = client.get("/segments", params={"journey": "complaints", "stage": "Evaluation"}).json()
    assert segment["scope"] == "case" and [i["id"] for i in segment["instances"]] == ["C-9"]
    assert client.get("/segments/summary").json()["complaints"]["Evaluation"] == 1
    mixed = client.get("/segments", params={"journey": "complaints", "stage": "Receipt", "buyer": "Purchase"})
    assert mixed.status_code == 422 and "different scopes" in mixed.text


def test_vbant_criteria_accumulate_over_several_touchpoints(client: TestClient):
    who = "dana@prospect.example"
    position = post(client, [
        payload("q0", "meeting_held", 0, who, deal_id="D-3"),
        payload("q1", "qualification_assessed", 1, who, deal_id="D-3", criteria=["budget"]),
    ])
    deal = get(client, "/deals/D-3", position)["journeys"]["deal_pipeline"]
    assert deal["stage"] == "Building Rapport"  # Qualifying needs all five VBANT criteria
    assert [c["name"] for c in deal["criteria"]] == ["budget"]
    position = post(client, [payload("q2", "call_connected", 2, who, deal_id="D-3", properties={"criteria": ["authority", "timeframe"]})])
    assert get(client, "/deals/D-3", position)["journeys"]["deal_pipeline"]["stage"] == "Building Rapport"
    position = post(client, [payload("q3", "email_opened", 3, who, deal_id="D-3", criteria=["need", "vision"])])
    deal = get(client, "/deals/D-3", position)["journeys"]["deal_pipeline"]
    assert deal["stage"] == "Qualifying" and deal["cause"]["touchpoint_id"] == "q3" and deal["defects"] == []
    assert {c["name"]: c["touchpoint_id"] for c in deal["criteria"]} == {
        "budget": "q1", "authority": "q2", "timeframe": "q2", "need": "q3", "vision": "q3",
    }
    # The customer's own seller journey expects the criteria but does not wait for them:
    # qualification_assessed is evidence of Qualifying, as before; criteria are shown.
    stages = client.get(f"/customers/{who}/stages").json()
    assert stages["seller"]["stage"] == "Qualifying" and stages["seller"]["cause"]["touchpoint_id"] == "q1"
    assert {c["name"]: c["touchpoint_id"] for c in stages["seller"]["criteria"]} == {
        "budget": "q1", "authority": "q2", "timeframe": "q2", "need": "q3", "vision": "q3",
    }
    assert stages["buyer"]["criteria"] is None  # journeys with no criteria do not list them
    assert set(stages["journeys"]) == {"buyer", "seller", "awareness", "relationship", "lead_funnel"}


def test_presenting_to_a_customer_not_yet_qualified_is_allowed_and_flagged(client: TestClient):
    who = "eve@prospect.example"
    position = post(client, [
        payload("e1", "needs_assessment_held", 0, who, criteria=["budget"]),
        payload("e2", "demo_delivered", 1, who),
    ])
    seller = get(client, f"/customers/{who}/stages", position)["seller"]
    assert seller["stage"] == "Presenting"
    assert seller["defects"] == ["Qualifying passed: vision, authority, need, timeframe not confirmed"]
    history = client.get(f"/customers/{who}/history").json()
    presenting = next(t for t in history["transitions"] if t["journey"] == "seller" and t["to_stage"] == "Presenting")
    assert presenting["defects"] == ["Qualifying passed: vision, authority, need, timeframe not confirmed"]
    # Once qualified, presenting again is no defect; a restart clears the journey's criteria and defects.
    position = post(client, [payload("e3", "deal_lost", 2, who)])
    seller = get(client, f"/customers/{who}/stages", position)["seller"]
    assert seller["stage"] is None and seller["defects"] == [] and seller["criteria"] == []
    position = post(client, [
        payload("e4", "qualification_assessed", 3, who, criteria=["vision", "budget", "authority", "need", "timeframe"]),
        payload("e5", "proposal_sent", 4, who),
    ])
    seller = get(client, f"/customers/{who}/stages", position)["seller"]
    assert seller["stage"] == "Presenting" and seller["defects"] == []
