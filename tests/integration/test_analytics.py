"""Marketing analytics on a small hand-built history, exact numbers, SQLite and PostgreSQL (issue 10).

Five customers in the buyer's journey (days after T0; campaign/channel in brackets):
  ann: ad_clicked 0 [spring/ads], inquiry 1 [webinar/email], requirements 3, demo 4 [demo-day/event], contract 10
  bob: inquiry 2 [spring/ads], quote 5 (skips two stages), deal_lost 7 (restart), inquiry 8
  cat: website 0, inquiry 5 [webinar/email] recorded *after* requirements 6 (a late touchpoint)
  dan: inquiry 1, qualification_assessed 2 (the seller two steps ahead of the buyer)
  eve: case_study_viewed 1 [spring/social] (the buyer evaluating, no seller engaged; skips two stages)
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from journeys.storage.api_keys import Role
from tests.factories import T0, payload

DAY = 86400.0


def at(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def history() -> tuple[list[dict], list[dict]]:
    first = [
        payload("a1", "ad_clicked", 0, "ann", campaign="spring", channel="ads"),
        payload("a2", "inquiry_received", 1, "ann", campaign="webinar", channel="email"),
        payload("a3", "requirements_shared", 3, "ann"),
        payload("a4", "demo_delivered", 4, "ann", campaign="demo-day", channel="event"),
        payload("a5", "contract_signed", 10, "ann"),
        payload("b1", "inquiry_received", 2, "bob", campaign="spring", channel="ads"),
        payload("b2", "quote_requested", 5, "bob"),
        payload("b3", "deal_lost", 7, "bob"),
        payload("b4", "inquiry_received", 8, "bob"),
        payload("c1", "website_visited", 0, "cat"),
        payload("c3", "requirements_shared", 6, "cat"),
        payload("d1", "inquiry_received", 1, "dan"),
        payload("d2", "qualification_assessed", 2, "dan"),
        payload("e1", "case_study_viewed", 1, "eve", campaign="spring", channel="social"),
    ]
    late = [payload("c2", "inquiry_received", 5, "cat", campaign="webinar", channel="email")]
    return first, late


def seed(client: TestClient) -> int:
    position = 0
    for batch in history():
        answer = client.post("/touchpoints/batch", json=batch)
        assert answer.status_code == 200, answer.text
        assert {r["outcome"] for r in answer.json()["results"]} == {"recorded"}, answer.text
        position = answer.json()["position"]
    client.get("/customers/ann/stages", params={"min_position": position}).raise_for_status()
    return position


def get(client: TestClient, path: str, **params) -> dict:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def by_stage(found: dict) -> dict[str, dict]:
    return {s["stage"]: s for s in found["stages"]}


def counts(stage: dict) -> tuple:
    return (stage["entered"], stage["advanced"], stage["to_next"], stage["skipped_next"], stage["restarted"],
            stage["still_in"], stage["passed_over"], stage["conversion"])


def test_funnel_counts_entries_advances_skips_restarts_and_times(client: TestClient):
    seed(client)
    funnel = by_stage(get(client, "/analytics/funnel", journey="buyer"))
    #                                   entered adv next skip restart still passed conversion
    assert counts(funnel["Identify Need"]) == (5, 3, 2, 1, 0, 2, 1, 0.6)
    assert counts(funnel["Determine Requirements"]) == (2, 1, 1, 0, 0, 1, 2, 0.5)
    assert counts(funnel["Evaluation"]) == (2, 1, 0, 1, 0, 1, 1, 0.5)
    assert counts(funnel["Negotiation"]) == (1, 0, 0, 0, 1, 0, 1, 0.0)
    assert counts(funnel["Purchase"]) == (1, 0, 0, 0, 0, 1, 0, 0.0)
    # Identify Need was left after 2 (ann), 3 (bob) and 1 day (cat: the late inquiry re-derived it).
    assert times(funnel["Identify Need"]["time_to_advance"]) == {"median_seconds": 2 * DAY, "p90_seconds": 3 * DAY, "advances": 3}
    assert times(funnel["Evaluation"]["time_to_advance"])["median_seconds"] == 6 * DAY
    assert funnel["Negotiation"]["time_to_advance"] == {"median_seconds": None, "p90_seconds": None, "advances": 0}


def times(found: dict) -> dict:
    """Durations as the stay counters give them: the middle of a log-spaced bucket, within 4.5% of
    the exact one; each is replaced by the whole number of days it stands for, if it is that close."""
    def days(value):
        if value is None or not isinstance(value, float):
            return value
        nearest = round(value / DAY) * DAY
        assert abs(value - nearest) <= 0.045 * nearest, f"{value} is not within a bucket of {nearest}"
        return nearest

    return {k: days(v) for k, v in found.items()}


def test_funnel_window_cohort_and_campaign(client: TestClient):
    seed(client)
    window = by_stage(get(client, "/analytics/funnel", journey="buyer", **{"from": at(2), "to": at(6)}))
    assert counts(window["Identify Need"]) == (2, 2, 1, 1, 0, 0, 0, 1.0)
    assert times(window["Identify Need"]["time_to_advance"]) == {"median_seconds": DAY, "p90_seconds": 3 * DAY, "advances": 2}
    assert counts(window["Determine Requirements"]) == (1, 1, 1, 0, 0, 0, 1, 1.0)
    assert counts(window["Evaluation"]) == (1, 1, 0, 1, 0, 0, 1, 1.0)
    assert counts(window["Negotiation"]) == (1, 0, 0, 0, 1, 0, 1, 0.0)
    assert counts(window["Purchase"]) == (0, 0, 0, 0, 0, 0, 0, None)
    march = by_stage(get(client, "/analytics/funnel", journey="buyer", cohort="2026-03"))
    assert counts(march["Identify Need"]) == (5, 3, 2, 1, 0, 2, 1, 0.6)
    april = by_stage(get(client, "/analytics/funnel", journey="buyer", cohort="2026-04"))
    assert all(s["entered"] == 0 for s in april.values())
    spring = by_stage(get(client, "/analytics/funnel", journey="buyer", campaign="spring"))  # ann, bob, eve
    assert counts(spring["Identify Need"]) == (3, 2, 1, 1, 0, 1, 1, round(2 / 3, 4))
    email = by_stage(get(client, "/analytics/funnel", journey="buyer", channel="email"))  # ann, cat
    assert counts(email["Identify Need"]) == (2, 2, 2, 0, 0, 0, 0, 1.0)


def test_a_campaigns_funnel_from_the_counters_equals_one_from_the_stays(client: TestClient, system,
                                                                                     monkeypatch):
    """The counters kept per campaign give the funnel the stays give, for any window (whole days
    from the counters, the parts of a day at its ends from the stays); channels read the stays."""
    from projections.analytics import Analytics, Filters

    seed(client)
    windows = [(None, None), (T0 + timedelta(days=2), T0 + timedelta(days=6)),
               (T0 + timedelta(days=1, hours=12), T0 + timedelta(days=8, hours=6)), (T0 + timedelta(days=3), None)]
    filters = [Filters(start, end, **which) for start, end in windows
               for which in ({"campaign": "spring"}, {"campaign": "webinar"}, {"channel": "email"}, {"channel": "ads"},
                             {"campaign": "nobody"})]
    counted = {f: system.analytics.funnel(journey, f) for f in filters for journey in ["buyer"]}
    monkeypatch.setattr(Analytics, "_spans", staticmethod(lambda f: (None, [f])))  # every stay read
    assert counted == {f: system.analytics.funnel("buyer", f) for f in filters}
    assert any(s["entered"] for found in counted.values() for s in found["stages"])


def test_attribution_and_leads_from_the_counters_equal_those_from_the_advances(client: TestClient, system,
                                                                               monkeypatch):
    """The credit and lead counters give what crediting the advances and counting the entries
    themselves gives, for any window (whole days from the counters, the ends from the rows)."""
    from projections.analytics import Analytics, Filters
    from projections.attribution import MODELS

    seed(client)
    windows = [(None, None), (T0 + timedelta(days=2), T0 + timedelta(days=6)),
               (T0 + timedelta(days=1, hours=12), T0 + timedelta(days=8, hours=6)), (T0 + timedelta(days=3), None),
               (None, T0 + timedelta(days=4, hours=1))]
    filters = [Filters(start, end) for start, end in windows]
    stages = system.playbook.journeys["buyer"].stages

    def everything() -> tuple[dict, dict]:
        credit = {(f, stage, model): system.analytics.attribution("buyer", stage, model, f)
                  for f in filters for stage in stages for model in MODELS}
        leads = {(f, by): system.analytics.leads(f, by) for f in filters for by in ("campaign", "channel")}
        return credit, leads

    counted = everything()
    monkeypatch.setattr(Analytics, "_spans", staticmethod(lambda f: (None, [f])))  # every advance and entry read
    assert everything() == counted
    assert any(found["campaigns"] for found in counted[0].values()) and any(counted[1].values())


def test_time_in_stage_and_stuck_customers(client: TestClient):
    seed(client)
    now = datetime.now(UTC)
    recent = payload("f1", "inquiry_received", 0, "fay")
    recent["occurred_at"] = (now - timedelta(hours=1)).isoformat()
    position = client.post("/touchpoints/batch", json=[recent]).json()["position"]
    client.get("/customers/fay/stages", params={"min_position": position}).raise_for_status()
    stages = by_stage(get(client, "/analytics/time-in-stage", journey="buyer"))
    ended = stages["Identify Need"]["ended"]
    assert times(ended) == {"stays": 3, "p50_seconds": 2 * DAY, "p75_seconds": 3 * DAY, "p90_seconds": 3 * DAY}
    current = stages["Identify Need"]["current"]  # fay (an hour), bob (since day 8), dan (since day 1)
    assert current["stays"] == 3
    age = lambda days: (now - T0 - timedelta(days=days)).total_seconds()  # noqa: E731
    assert current["p50_seconds"] == pytest.approx(age(8), abs=120)
    assert current["p90_seconds"] == pytest.approx(age(1), abs=120)
    assert stages["Purchase"]["ended"] == {"stays": 0, "p50_seconds": None, "p75_seconds": None, "p90_seconds": None}
    assert stages["Purchase"]["terminal"] and not stages["Identify Need"]["terminal"]  # an outcome, not a wait

    stuck = get(client, "/segments", journey="buyer", stage="Identify Need", stuck="true")
    assert times({"after": stuck["stuck_after_seconds"]}) == {"after": 3 * DAY}
    assert sorted(m["customer_id"] for m in stuck["customers"]) == ["bob", "dan"]  # not fay: an hour in
    seller = get(client, "/analytics/time-in-stage", journey="seller")["stages"]
    waiting = next(s["stage"] for s in seller if not s["terminal"] and not s["ended"]["stays"])
    nothing_ended = client.get("/segments", params={"journey": "seller", "stage": waiting, "stuck": "true"})
    assert nothing_ended.status_code == 422 and f"no stay in {waiting} has ended" in nothing_ended.text
    at_the_end = client.get("/segments", params={"journey": "buyer", "stage": "Purchase", "stuck": "true"})
    assert at_the_end.status_code == 422 and "Purchase is where the Buyer's journey ends" in at_the_end.text
    assert client.get("/segments", params={"stuck": "true"}).status_code == 422


def test_alignment_matrix_calls_out_ahead_behind_and_defects(client: TestClient):
    seed(client)
    matrix = get(client, "/analytics/alignment")
    cells = {(c["row"], c["column"]): c for c in matrix["cells"]}
    assert sum(c["instances"] for c in matrix["cells"]) == 5
    ann = cells[("Purchase", "Closing")]  # presented before qualifying: a process defect, now aligned
    assert (ann["instances"], ann["with_defects"], ann["alignment"]) == (1, 1, "aligned")
    assert ann["segment"] == "/segments?buyer=Purchase&seller=Closing"
    assert cells[("Identify Need", "Prospecting")]["instances"] == 1  # bob after his restart
    assert cells[("Determine Requirements", "Prospecting")]["alignment"] == "aligned"  # cat
    assert cells[("Identify Need", "Qualifying")]["alignment"] == "seller_ahead"  # dan
    eve = cells[("Evaluation", None)]
    assert (eve["alignment"], eve["segment"]) == ("seller_behind", "/segments?buyer=Evaluation&seller=not_started")
    followed = client.get(eve["segment"]).json()
    assert [m["customer_id"] for m in followed["customers"]] == ["eve"]
    assert matrix["row_stages"][0] is None and matrix["column_stages"][-1] == "Closing"


@pytest.mark.parametrize("model, expected", [
    ("first", {"spring": 1.0}),
    ("last", {"demo-day": 1.0}),
    ("linear", {"spring": 0.3333, "webinar": 0.3333, "demo-day": 0.3333}),
    ("position", {"spring": 0.4, "demo-day": 0.4, "webinar": 0.2}),
])
def test_attribution_models_over_the_touches_before_the_advance(client: TestClient, model, expected):
    seed(client)
    found = get(client, "/analytics/attribution", journey="buyer", stage="Purchase", model=model)
    assert {c["name"]: c["credit"] for c in found["campaigns"]} == {k: v for k, v in expected.items() if v}
    assert (found["advances"], found["unattributed"]) == (1, 0)


def test_attribution_credits_channels_and_counts_the_unattributed(client: TestClient):
    seed(client)
    found = get(client, "/analytics/attribution", journey="buyer", stage="Identify Need", model="linear")
    # ann (spring, webinar), bob twice (spring), cat (webinar: the late inquiry), dan (no campaign touch)
    assert {c["name"]: c["credit"] for c in found["campaigns"]} == {"spring": 2.5, "webinar": 1.5}
    assert {c["name"]: c["credit"] for c in found["channels"]} == {"ads": 2.5, "email": 1.5}
    assert (found["advances"], found["unattributed"]) == (5, 1)
    windowed = get(client, "/analytics/attribution", journey="buyer", stage="Determine Requirements",
                   model="last", **{"from": at(5)})
    assert {c["name"]: c["credit"] for c in windowed["campaigns"]} == {"webinar": 1.0}  # cat only
    bad = client.get("/analytics/attribution", params={"journey": "buyer", "stage": "Nope"})
    assert bad.status_code == 422 and "not a stage of the buyer journey" in bad.text
    assert client.get("/analytics/attribution", params={"journey": "buyer", "stage": "Purchase", "model": "x"}).status_code == 422


def test_spend_gives_cost_per_lead_and_per_advance(client: TestClient):
    seed(client)
    recorded = client.post("/campaigns/spring/spend", json={"period": "2026-03", "amount": "310.00", "currency": "eur"})
    assert recorded.status_code == 201, recorded.text
    assert recorded.json() == {"campaign": "spring", "period_start": "2026-03-01", "period_end": "2026-03-31",
                               "amount": "310.00", "currency": "EUR"}
    assert client.post("/campaigns/webinar/spend",
                       json={"period": "2026-03-01/2026-03-10", "amount": 100, "currency": "EUR"}).status_code == 201
    for bad, field in [({"period": "2026-13", "amount": 1, "currency": "EUR"}, "period"),
                       ({"period": "2026-03", "amount": -1, "currency": "EUR"}, "amount"),
                       ({"period": "2026-03", "amount": "NaN", "currency": "EUR"}, "amount"),
                       ({"period": "2026-03", "amount": 1, "currency": "euro"}, "currency")]:
        answer = client.post("/campaigns/spring/spend", json=bad)
        assert answer.status_code == 422 and field in json.dumps(answer.json()["detail"]), (bad, answer.text)
    report = {c["campaign"]: c for c in get(client, "/analytics/cost", journey="buyer")["campaigns"]}
    spring = report["spring"]
    # Leads are lead-funnel entries (seed 001), by the campaign of the touchpoint that made the lead:
    # spring made one (bob's first inquiry); eve's case study and ann's ad click made none.
    assert (spring["spend"], spring["leads"], spring["cost_per_lead"]) == ({"EUR": "310.00"}, 1, {"EUR": "310.00"})
    assert spring["stages"]["Identify Need"] == {"advances": 2.5, "cost_per_advance": {"EUR": "124.00"}}
    webinar = report["webinar"]  # ann and cat; ann signed: converted and a customer
    assert (webinar["leads"], webinar["cost_per_lead"], webinar["converted"], webinar["customers"]) == (
        2, {"EUR": "50.00"}, 1, 1)
    assert (webinar["conversion_rate"], webinar["lead_to_customer_rate"]) == (0.5, 0.5)
    assert report["demo-day"]["spend"] == {} and report["demo-day"]["leads"] == 0
    assert report["(none)"]["leads"] == 2  # bob again after his restart, dan
    channels = {c["channel"]: c for c in get(client, "/analytics/cost", journey="buyer")["channels"]}
    assert {k: c["leads"] for k, c in channels.items()} == {"ads": 1, "email": 2, "web": 2, "social": 0, "event": 0}
    assert channels["ads"]["stages"]["Identify Need"] == {"advances": 2.5} and "spend" not in channels["ads"]
    # A window takes the share of each period's days inside it: days 6 to 10 of the webinar's ten.
    window = {c["campaign"]: c for c in get(client, "/analytics/cost", journey="buyer",
                                             **{"from": "2026-03-06T00:00:00Z", "to": "2026-03-11T00:00:00Z"})["campaigns"]}
    assert window["webinar"]["spend"] == {"EUR": "50.00"}
    assert [s["period_start"] for s in get(client, "/campaigns/webinar/spend")] == ["2026-03-01"]


def test_export_streams_the_whole_segment_with_next_messages(client: TestClient):
    seed(client)
    answer = client.get("/segments/export", params={"buyer": "Identify Need", "format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted(r["customer_id"] for r in rows) == ["bob", "dan"]
    dan = next(r for r in rows if r["customer_id"] == "dan")
    assert (dan["buyer"], dan["seller"], dan["awareness"], dan["next_message_id"]) == (
        "Identify Need", "Qualifying", "Interested", "interested-roi")
    lines = client.get("/segments/export", params={"buyer": "Identify Need", "format": "jsonl"}).text.splitlines()
    assert sorted(json.loads(line)["customer_id"] for line in lines) == ["bob", "dan"]


def test_timeline_has_touchpoints_and_transitions_per_journey(client: TestClient):
    seed(client)
    found = get(client, "/customers/cat/timeline")
    assert [t["touchpoint_id"] for t in found["touchpoints"]] == ["c1", "c2", "c3"]
    assert "properties" not in found["touchpoints"][0] and "actor" not in found["touchpoints"][0]
    buyer = [(t["from_stage"], t["to_stage"]) for t in found["transitions"] if t["journey"] == "buyer"]
    assert buyer == [(None, "Identify Need"), ("Identify Need", "Determine Requirements")]


def test_deals_and_cases_have_funnels_and_stuck_segments_too(client: TestClient):
    position = client.post("/touchpoints/batch", json=[
        payload("k1", "complaint_filed", 0, "kim", case_id="K1"),
        payload("k2", "complaint_processing_started", 1, "kim", case_id="K1"),
        payload("k3", "complaint_answered", 3, "kim", case_id="K1"),
        payload("l1", "complaint_filed", 0, "lee", case_id="K2"),
        payload("l2", "complaint_answered", 2, "lee", case_id="K2"),
        payload("l3", "complaint_resolution_checked", 4, "lee", case_id="K2"),
    ]).json()["position"]
    client.get("/cases/K1", params={"min_position": position}).raise_for_status()
    funnel = by_stage(get(client, "/analytics/funnel", journey="complaints"))
    assert get(client, "/analytics/funnel", journey="complaints")["scope"] == "case"
    assert counts(funnel["Receipt"]) == (2, 2, 1, 1, 0, 0, 0, 1.0)
    assert counts(funnel["Processing"]) == (1, 1, 1, 0, 0, 0, 1, 1.0)
    assert counts(funnel["Response"]) == (2, 1, 1, 0, 0, 1, 0, 0.5)
    stuck = get(client, "/segments", journey="complaints", stage="Response", stuck="true")
    assert [i["id"] for i in stuck["instances"]] == ["K1"] and times({"after": stuck["stuck_after_seconds"]}) == {"after": 2 * DAY}
    export = client.get("/segments/export", params={"journey": "complaints", "stage": "Control", "format": "csv"})
    assert list(csv.DictReader(io.StringIO(export.text))) == [{"id": "K2", "touchpoint_count": "3", "complaints": "Control"}]
    lanes = get(client, "/cases/K1/timeline")
    assert [t["to_stage"] for t in lanes["transitions"]] == ["Receipt", "Processing", "Response"]
    assert lanes["journeys"] == ["complaints"] and lanes["touchpoint_count"] == 3
    assert client.get("/cases/K404/timeline").status_code == 404


def test_analytics_are_for_marketers(client: TestClient, keys):
    publisher = keys.create("pub", Role.publisher)
    marketer = keys.create("mkt", Role.marketer)
    for path in ("/analytics/funnel?journey=buyer", "/analytics/alignment", "/analytics/time-in-stage?journey=buyer"):
        assert client.get(path, headers={"Authorization": f"Bearer {publisher}"}).status_code == 403
        assert client.get(path, headers={"Authorization": f"Bearer {marketer}"}).status_code == 200
        assert client.get(path, headers={"Authorization": ""}).status_code == 401
    assert client.post("/campaigns/x/spend", json={"period": "2026-03", "amount": 1, "currency": "EUR"},
                       headers={"Authorization": f"Bearer {publisher}"}).status_code == 403


def test_spend_import_and_segment_export_on_the_command_line(client: TestClient, settings, tmp_path):
    from typer.testing import CliRunner

    from api.cli import app
    from tests.integration.test_cli import env_for

    seed(client)
    cli, env = CliRunner(), env_for(settings)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("campaign,period,amount,currency\nspring,2026-03,100,EUR\nwebinar,2026-02-30/2026-03-01,5,EUR\n")
    refused = cli.invoke(app, ["import-spend", str(wrong)], env=env)
    assert refused.exit_code == 2 and "line 3: period" in refused.output and "nothing was recorded" in refused.output
    assert get(client, "/campaigns/spring/spend") == []  # all or nothing
    good = tmp_path / "spend.csv"
    good.write_text("campaign,period,amount,currency\nspring,2026-03,310,EUR\nwebinar,2026-03-01/2026-03-10,100,eur\n")
    assert cli.invoke(app, ["import-spend", str(good)], env=env).exit_code == 0
    cost = {c["campaign"]: c for c in get(client, "/analytics/cost", journey="buyer")["campaigns"]}
    assert cost["spring"]["cost_per_lead"] == {"EUR": "310.00"} and cost["webinar"]["spend"] == {"EUR": "100.00"}

    out = tmp_path / "segment.csv"
    done = cli.invoke(app, ["export-segment", "--stage", "buyer=Identify Need", "--output", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert sorted(r["customer_id"] for r in csv.DictReader(out.open())) == ["bob", "dan"]
    assert "2 members written" in done.output
    assert cli.invoke(app, ["export-segment", "--stage", "buyer=Nope", "-o", str(out)], env=env).exit_code == 2


def test_a_store_from_before_the_counters_is_counted_when_opened(client: TestClient, system, settings):
    from projections.system import System

    seed(client)
    before = get(client, "/segments/summary")
    cost = get(client, "/analytics/cost", journey="buyer", model="position")
    # As a store from before the counters: none kept, and no schema version recorded.
    for table in ("counts", "credit_days", "advance_days", "lead_days", "schema_versions"):
        system.view.execute(f"DELETE FROM {system.view.table(table)}")
    assert get(client, "/analytics/cost", journey="buyer", model="position") != cost
    reopened = System.build(settings)
    try:
        expected = {(None if k == "not_started" else k): n for k, n in before["buyer"].items() if n}
        assert reopened.view.summary()["buyer"] == expected and sum(expected.values()) == 5
        assert reopened.analytics.alignment("buyer", "seller")["cells"] == system.analytics.alignment("buyer", "seller")["cells"]
        assert get(client, "/analytics/cost", journey="buyer", model="position") == cost
    finally:
        reopened.close()


@pytest.mark.parametrize("path, params", [
    ("/analytics/funnel", {"journey": "buyer", "campaign": "a\x00b"}),
    ("/analytics/funnel", {"journey": "buyer", "campaign": "x" * 201}),
    ("/analytics/funnel", {"journey": "buyer", "cohort": "9999-12"}),
    ("/analytics/funnel", {"journey": "buyer", "cohort": "0000-01"}),
    ("/analytics/funnel", {"journey": "buyer", "cohort": "2026-03-09/2026-03-01"}),
    ("/analytics/funnel", {"journey": "buyer", "from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}),
    ("/analytics/funnel", {"journey": "buyer", "from": "not a date"}),
    ("/analytics/funnel", {"journey": "nope"}),
    ("/analytics/alignment", {"rows": "buyer", "columns": "buyer"}),
    ("/analytics/alignment", {"rows": "buyer", "columns": "complaints"}),
    ("/analytics/cost", {"journey": "buyer", "model": "everything"}),
    ("/segments/export", {"buyer": "Nope"}),
    ("/segments/export", {"format": "xlsx"}),
])
def test_bad_analytics_queries_get_a_clear_422(client: TestClient, path, params):
    answer = client.get(path, params=params)
    assert answer.status_code == 422, (path, params, answer.text)
    assert answer.json()["detail"]


def test_a_lone_surrogate_in_a_query_or_a_spend_body_gets_a_422(client: TestClient):
    # Bytes that are not UTF-8 in a query string arrive as U+FFFD: a value that matches nothing.
    for query in ("channel=%ED%A0%80", "campaign=%F0%9F"):
        answer = client.get(f"/analytics/funnel?journey=buyer&{query}")
        assert answer.status_code == 200, (query, answer.text)
        assert "\ufffd" in json.dumps(answer.json()["window"], ensure_ascii=False)
        assert all(s["entered"] == 0 for s in answer.json()["stages"])
    assert client.get("/analytics/funnel?journey=buyer&cohort=%ED%A0%80").status_code == 422
    raw = '{"period": "2026-03", "amount": 1, "currency": "E\\ud800R"}'
    answer = client.post("/campaigns/spring/spend", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "currency" in answer.text, answer.text


@pytest.mark.parametrize("body", [
    {"period": "2026-03", "amount": "1e999999", "currency": "EUR"},
    {"period": "2026-03", "amount": "Infinity", "currency": "EUR"},
    {"period": "0000-01", "amount": 1, "currency": "EUR"},
    {"period": "2026-03\x00", "amount": 1, "currency": "EUR"},
    {"period": "2026-03", "amount": 1, "currency": "EUR", "extra": {"a": [[[[]]]]}},
    {"period": "2026-03", "amount": 1},
])
def test_bad_spend_gets_a_clear_422_and_stores_nothing(client: TestClient, body):
    answer = client.post("/campaigns/spring/spend", json=body)
    assert answer.status_code == 422, (body, answer.text)
    assert client.get("/campaigns/spring/spend").json() == []
