"""A deal's history across its contacts, pages, and what we knew when (issue 9), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime

from fastapi.testclient import TestClient

from tests.factories import payload

DEAL = [
    ("h1", "lead_captured", 0, "ann@buyer.example", {}),
    ("h2", "meeting_held", 1, "ben@buyer.example", {}),
    ("h3", "demo_delivered", 3, "cy@buyer.example", {}),
    ("h4", "contract_sent", 4, "ben@buyer.example", {}),
    ("h5", "order_placed", 5, "ann@buyer.example", {}),
]


def post(client: TestClient, items: list[dict]) -> int:
    answer = client.post("/touchpoints/batch", json=items)
    assert answer.status_code == 200, answer.text
    return answer.json()["position"]


def test_a_deals_history_across_three_contacts_posted_shuffled(client: TestClient):
    items = [payload(i, t, d, who, deal_id="D-7", **extra) for i, t, d, who, extra in DEAL]
    random.Random(7).shuffle(items)
    position = 0
    for item in items:
        position = post(client, [item])
    found = client.get("/deals/D-7/history", params={"min_position": position}).json()
    assert [t["touchpoint_id"] for t in found["touchpoints"]] == ["h1", "h2", "h3", "h4", "h5"]
    assert [t["customer_id"].split("@")[0] for t in found["touchpoints"]] == ["ann", "ben", "cy", "ben", "ann"]
    assert all(t["recorded_at"] >= t["occurred_at"] for t in found["touchpoints"])
    demo = found["touchpoints"][2]["transitions"]
    assert {(c["scope"], c["journey"], c["from_stage"], c["to_stage"]) for c in demo} == {
        ("customer", "buyer", None, "Evaluation"),
        ("customer", "seller", None, "Presenting"),
        ("customer", "awareness", "Unaware", "Evaluating"),
        ("deal", "deal_pipeline", "Building Rapport", "Presenting"),
    }
    deal_step = next(c for c in demo if c["scope"] == "deal")
    assert deal_step["defects"] == ["Qualifying skipped: vision, budget, authority, need, timeframe not confirmed"]
    summary = found["summary"]
    assert summary["touchpoint_count"] == 5
    assert summary["first_touch"].startswith("2026-03-02") and summary["last_touch"].startswith("2026-03-07")
    assert sorted((c["customer_id"].split("@")[0], c["touchpoints"]) for c in summary["contacts"]) == [
        ("ann", 2), ("ben", 2), ("cy", 1)]
    assert summary["journeys"]["deal_pipeline"] == {"scope": "deal", "furthest_stage": "Closing", "restarted": False}
    assert summary["journeys"]["buyer"]["furthest_stage"] == "Purchase"

    pages, after = [], None
    while True:
        page = client.get("/deals/D-7/history", params={"limit": 2, **({"after": after} if after else {})}).json()
        pages.append([t["touchpoint_id"] for t in page["touchpoints"]])
        assert page["summary"] == summary  # the summary is of the whole deal on every page
        after = page["next_cursor"]
        if after is None:
            break
    assert pages == [["h1", "h2"], ["h3", "h4"], ["h5"]]
    bad = client.get("/deals/D-7/history", params={"after": "not-a-cursor"})
    assert bad.status_code == 422 and "cursor" in bad.text
    assert client.get("/deals/D-404/history").status_code == 404


def test_known_at_gives_the_answer_as_it_was_known(client: TestClient):
    who = "dee@buyer.example"
    first = post(client, [payload("k1", "meeting_held", 0, who, deal_id="D-8"),
                          payload("k3", "demo_delivered", 3, who, deal_id="D-8")])
    # Known when the first two were recorded: the late one, recorded after, is not in that answer.
    before_late = max(t["recorded_at"] for t in client.get("/deals/D-8/history", params={"min_position": first})
                      .json()["touchpoints"])
    # A late touchpoint: it occurred before the demo, and qualifies the deal.
    position = post(client, [payload("k2", "qualification_assessed", 2, who, deal_id="D-8",
                                     criteria=["vision", "budget", "authority", "need", "timeframe"])])
    old = client.get("/deals/D-8/history", params={"known_at": before_late, "min_position": position}).json()
    new = client.get("/deals/D-8/history").json()
    assert [t["touchpoint_id"] for t in old["touchpoints"]] == ["k1", "k3"]
    assert [t["touchpoint_id"] for t in new["touchpoints"]] == ["k1", "k2", "k3"]
    old_demo = next(c for c in old["touchpoints"][1]["transitions"] if c["scope"] == "deal")
    new_demo = next(c for c in new["touchpoints"][2]["transitions"] if c["scope"] == "deal")
    assert old_demo["from_stage"] == "Building Rapport" and old_demo["defects"]
    assert new_demo["from_stage"] == "Qualifying" and new_demo["defects"] == []
    # The history shows the revision the late touchpoint made, the deal's and the contact's; as known before, none.
    assert old["revisions"] == []
    deal_revision = next(r for r in new["revisions"] if r["scope"] == "deal")
    assert deal_revision["subject"] == "D-8" and deal_revision["cause_touchpoint_id"] == "k2"
    assert ("Building Rapport", "Presenting") in [(t["from_stage"], t["to_stage"]) for t in deal_revision["removed"]]
    assert [(t["from_stage"], t["to_stage"]) for t in deal_revision["added"]] == [
        ("Building Rapport", "Qualifying"), ("Qualifying", "Presenting")]
    assert deal_revision["recorded_at"] == new["touchpoints"][1]["recorded_at"]
    assert datetime.fromisoformat(deal_revision["recorded_at"]) > datetime.fromisoformat(before_late)
    # The same moment asked again later gives the same answer, whatever arrives meanwhile.
    post(client, [payload("k0", "lead_captured", -1, who, deal_id="D-8")])
    again = client.get("/deals/D-8/history", params={"known_at": before_late}).json()
    assert again["touchpoints"] == old["touchpoints"] and again["summary"] == old["summary"]

    stages_then = client.get(f"/customers/{who}/stages", params={"known_at": before_late}).json()
    assert stages_then["seller"]["defects"] == ["Qualifying skipped: vision, budget, authority, need, timeframe not confirmed"]
    assert client.get(f"/customers/{who}/stages").json()["seller"]["defects"] == []
    history_then = client.get(f"/customers/{who}/history", params={"known_at": before_late}).json()
    assert [t["touchpoint_id"] for t in history_then["touchpoints"]] == ["k1", "k3"]


def test_a_page_read_from_its_own_rows_equals_the_page_derived_from_the_whole_history(system):
    """A current page reads only its rows and aggregates the summary in the database; the same
    page as known at a moment after everything was recorded derives the whole history again.
    Posted shuffled, in small batches, with ties in time: the two agree on every page."""
    from datetime import UTC, timedelta

    from journeys.playbook import Scope
    from projections.history import Window, history
    from tests.factories import rid, tp

    rng = random.Random(7)
    types = ["email_opened", "meeting_held", "requirements_shared", "demo_delivered", "quote_requested",
             "proposal_sent", "deal_lost", "contract_sent", "order_placed"]
    contacts = [f"p{i}@buyer.example" for i in range(4)]
    items = [tp(f"e{n:03d}", rng.choice(types), rng.randrange(0, 40) / 2, rng.choice(contacts), deal_id="D-9")
             for n in range(60)]
    rng.shuffle(items)
    for start in range(0, len(items), 7):
        system.record(items[start : start + 7])
        system.runner.catch_up()
    later = Window(known_at=datetime.now(UTC) + timedelta(days=1))
    for scope, subject in ((Scope.deal, "D-9"), (Scope.customer, rid(system, contacts[0]))):
        cursors: dict[str, str | None] = {"now": None, "derived": None}
        pages = 0
        while True:
            now = history(system, scope, subject, Window(), cursors["now"], 8)
            derived = history(system, scope, subject, later, cursors["derived"], 8)
            assert _without_stored_only(now) == _without_stored_only(derived)
            pages += 1
            cursors = {"now": now["next_cursor"], "derived": derived["next_cursor"]}
            if now["next_cursor"] is None:
                break
        assert pages > 1 and now["summary"]["touchpoint_count"] == (60 if scope is Scope.deal else
                                                                   sum(1 for i in items if i.customer_id == contacts[0]))


def _without_stored_only(page: dict) -> dict:
    """A page without what only stored transitions carry (the playbook that derived them, the cause's
    record: the API's answer leaves both out)."""
    return {**page, "touchpoints": [
        {**t, "transitions": [{k: v for k, v in x.items() if k not in ("record_id", "playbook")} for x in t["transitions"]]}
        for t in page["touchpoints"]
    ]}
