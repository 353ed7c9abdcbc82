"""The marketers' dashboard in a real browser: the system's headless Chromium driven by Playwright
(issue 10). Seeds the hand-built history of test_analytics, serves the API with uvicorn, logs in
with a marketer key, checks the charts' numbers, follows an alignment cell to its segment,
exports it, opens a timeline, and saves screenshots to .artifacts/dashboard/.

Chromium: /usr/bin/chromium (scripts/ensure-chromium.sh installs it), or JOURNEYS_CHROMIUM.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from api.main import create_app
from journeys.storage.api_keys import KeyStore, Role
from journeys.touchpoint import Touchpoint
from projections.system import System
from tests.factories import payload
from tests.integration.test_analytics import history
from tests.serving import serve

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "dashboard"
CHROMIUM = os.environ.get("JOURNEYS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def served(system: System):
    """The API (projecting) on a local port, seeded; yields its base URL and a marketer key."""
    system.runner.start()
    recorded = None
    for batch in history():
        recorded = system.record([Touchpoint(**t) for t in batch])
    recorded = system.record([Touchpoint(**payload("b5", "complaint_filed", 9, "bob", case_id="K-7"))])  # a lane of its own
    assert system.runner.wait(recorded.position, 30)
    key = KeyStore(system.view, cache_seconds=0).create("dashboard-test", Role.marketer)
    with serve(create_app(system=system)) as base:
        spent = httpx.post(f"{base}/campaigns/spring/spend", json={"period": "2026-03", "amount": "300", "currency": "EUR"},
                           headers={"Authorization": f"Bearer {key}"})
        assert spent.status_code == 201, spent.text
        yield base, key


def chart_data(page, canvas: str) -> list[list[float]]:
    return page.evaluate(f"Chart.getChart(document.getElementById('{canvas}')).data.datasets.map(d => d.data)")


def axes(page, canvas: str) -> dict:
    return page.evaluate(f"""(() => {{
        const s = Chart.getChart(document.getElementById('{canvas}')).options.scales;
        return {{ x: s.x.title.text, y: s.y.title.text, precision: s.y.ticks.precision }};
    }})()""")


def test_dashboard_in_chromium(served, tmp_path):
    base, key = served
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        requested, problems = [], []
        page.on("request", lambda r: requested.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/dashboard")
        expect(page.locator("#main")).to_be_hidden()  # no empty panels before a key is given
        page.fill("#key", key)
        held: list = []  # the cost panel's answer is held back: the panel says it is loading, the others draw
        page.route("**/analytics/cost?*", lambda route: held.append(route))
        page.click("#login button")
        expect(page.locator("#cost-section")).to_have_attribute("aria-busy", "true")
        expect(page.locator("#counts-table")).to_contain_text("Identify Need")
        expect(page.locator("#counts-section")).not_to_have_attribute("aria-busy", "true")
        for route in held:
            route.continue_()
        page.unroute("**/analytics/cost?*")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15000)
        expect(page.locator("section[aria-busy]")).to_have_count(0)

        # Stage counts: ann Purchase, bob and dan Identify Need, cat Determine Requirements, eve Evaluation.
        assert chart_data(page, "counts-chart") == [[0, 2, 1, 1, 0, 1]]
        # Charts say what they show: axis titles, whole numbers for counts, the journey's title.
        assert axes(page, "counts-chart") == {"x": "stage of the Buyer's journey", "y": "instances now", "precision": 0}
        assert axes(page, "funnel-chart")["y"] == "stays" and axes(page, "funnel-chart")["precision"] == 0
        expect(page.locator("#journey option:checked")).to_have_text("Buyer's journey")
        # The funnel: entered and advanced per stage, as test_analytics computes them by hand.
        assert chart_data(page, "funnel-chart") == [[5, 2, 2, 1, 1], [3, 1, 1, 0, 0]]
        expect(page.locator("#funnel-table")).to_contain_text("60.0%")
        negotiation = page.locator("#funnel-table tr", has_text="Negotiation").locator("td")
        assert negotiation.nth(5).inner_text() == "1" and negotiation.nth(9).inner_text() == "100.0%"  # drop-off: restarted
        # A window compares with the previous period of the same length, as the API counts each.
        page.fill("#funnel-from", "2026-03-05")
        page.fill("#funnel-to", "2026-03-09")
        page.click("#funnel-form button")
        expect(page.locator("#funnel-table")).to_contain_text("entered (previous period)")
        auth = {"Authorization": f"Bearer {key}"}
        now = httpx.get(f"{base}/analytics/funnel", headers=auth, params={
            "journey": "buyer", "from": "2026-03-05T00:00:00Z", "to": "2026-03-09T00:00:00Z"}).json()
        before = httpx.get(f"{base}/analytics/funnel", headers=auth, params={
            "journey": "buyer", "from": "2026-03-01T00:00:00Z", "to": "2026-03-05T00:00:00Z"}).json()
        first = page.locator("#funnel-table tr").nth(1).locator("td")
        assert first.nth(1).inner_text() == str(now["stages"][0]["entered"])
        assert first.nth(12).inner_text() == str(before["stages"][0]["entered"])
        expect(page.locator("#cost-table")).to_contain_text("cost per lead (previous period)")  # cost compares too
        page.fill("#funnel-from", "")
        page.fill("#funnel-to", "")
        page.click("#funnel-form button")
        expect(page.locator("#funnel-table")).not_to_contain_text("previous period")
        times = httpx.get(f"{base}/analytics/time-in-stage", headers=auth, params={"journey": "buyer"}).json()
        median = times["stages"][0]["ended"]["p50_seconds"]  # Identify Need's median ended stay: 2 days,
        assert abs(median - 2 * 86400) <= 0.045 * 2 * 86400  # as the stay counters' bucket holds it
        expect(page.locator("#time-table")).to_contain_text(f"{median / 86400:.1f} d")
        purchase = page.locator("#time-table tr", has_text="Purchase")  # where the journey ends: an outcome
        expect(purchase).to_contain_text("outcome")
        assert purchase.locator("a").count() == 0
        page.select_option("#attribution-stage", "Purchase")
        page.select_option("#attribution-model", "position")
        page.click("#attribution-form button")
        expect(page.locator("#attribution-table")).to_contain_text("demo-day")
        assert sorted(chart_data(page, "attribution-chart")[0]) == [0.2, 0.4, 0.4]
        expect(page.locator("#attribution-note")).to_have_text("1 reached Purchase; 0 of them after no campaign touch.")
        page.select_option("#attribution-stage", "Negotiation")
        page.click("#attribution-form button")
        expect(page.locator("#attribution-note")).to_contain_text("Negotiation")  # an empty chart says why
        page.select_option("#attribution-stage", "Purchase")
        page.click("#attribution-form button")
        expect(page.locator("#attribution-table")).to_contain_text("demo-day")
        # The cost panel shows what the API computes: spend, cost per lead and per advance.
        cost = httpx.get(f"{base}/analytics/cost", params={"journey": "buyer"}, headers={"Authorization": f"Bearer {key}"}).json()
        spring = next(c for c in cost["campaigns"] if c["campaign"] == "spring")
        row = page.locator("#cost-table tr", has_text="spring")
        expect(row).to_contain_text(f"{spring['spend']['EUR']} EUR")
        assert spring["cost_per_lead"], spring
        expect(row).to_contain_text(f"{spring['cost_per_lead']['EUR']} EUR")
        ads = next(c for c in cost["channels"] if c["channel"] == "ads")
        channel_row = page.locator("#cost-channel-table tr", has_text="ads").locator("td")
        assert channel_row.nth(1).inner_text() == str(ads["leads"])  # per channel, as the API counts
        page.screenshot(path=str(SCREENSHOTS / "1-overview.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 1800})  # nothing wider than the page: tables scroll in their panel
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        page.set_viewport_size({"width": 1400, "height": 1800})

        # The alignment matrix: eve evaluates with no seller engaged; follow the cell to its segment.
        behind = page.locator('#alignment-table td[data-row="Evaluation"][data-column="not_started"]')
        expect(behind).to_have_class("behind")
        expect(behind).to_have_text("1")
        expect(page.locator('#alignment-table td[data-row="Purchase"][data-column="Closing"]')).to_have_text("1 ⚑1")
        behind.locator("a").click()
        expect(page.locator("#segment-title")).to_have_text("buyer=Evaluation, seller=not_started")
        expect(page.locator("#segment-table")).to_contain_text("eve")
        page.screenshot(path=str(SCREENSHOTS / "2-alignment-segment.png"), full_page=True)

        with page.expect_download() as download:
            page.click("#segment-export")
        saved = tmp_path / "segment.csv"
        download.value.save_as(saved)
        rows = list(csv.DictReader(saved.open()))
        assert [(r["customer_id"], r["buyer"], r["seller"], r["next_message_id"]) for r in rows] == [
            ("eve", "Evaluation", "", "evaluating-case-study")
        ]

        # eve's timeline: her one touchpoint and the transitions it caused, lane by lane.
        page.locator("#segment-table a", has_text="eve").click()
        expect(page.locator("#timeline")).to_have_attribute("data-customer", "eve")
        assert page.locator('[data-lane="touchpoints"] .mark').count() == 1
        assert page.locator('[data-lane="buyer"] .mark').count() == 1
        assert page.locator('[data-lane="seller"] .mark').count() == 0
        # Read without hovering: dates on an axis, lanes titled as in the playbook, stages and types named.
        assert page.locator('[data-lane="axis"] .tick').first.inner_text()[:2] in ("19", "20")
        expect(page.locator('[data-lane="buyer"] .lane-name')).to_have_text("Buyer's journey")
        expect(page.locator('[data-lane="buyer"] .mark-label')).to_have_text("Evaluation")
        expect(page.locator('[data-lane="buyer"] .span-bar')).to_have_attribute("title", "Evaluation: 2026-03-03 → now")
        page.locator('[data-lane="touchpoints"] .mark').first.click()
        expect(page.locator("#timeline-detail")).to_contain_text("touchpoint ")
        expect(page.locator("#funnel-legend")).to_contain_text("passed over")
        page.locator("#timeline-section").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "3-timeline.png"), full_page=True)
        # A case the customer is in is a lane of its own, titled and at its stage.
        page.fill("#timeline-customer", "bob")
        page.click("#timeline-form button")
        expect(page.locator("#timeline")).to_have_attribute("data-customer", "bob")
        expect(page.locator('[data-lane="case K-7"] .lane-name')).to_contain_text("case K-7")
        expect(page.locator('[data-lane="case K-7"] .mark-label')).to_have_text("Receipt")
        page.fill("#timeline-customer", "eve")
        page.click("#timeline-form button")
        expect(page.locator("#timeline")).to_have_attribute("data-customer", "eve")
        for panel in page.locator("main > section").all():  # each panel on its own, for review
            panel.screenshot(path=str(SCREENSHOTS / f"panel-{panel.get_attribute('id')}.png"))

        # The view is in the URL: another journey chosen, the address restores it (the key is not in it).
        page.select_option("#journey", "seller")
        expect(page).to_have_url(f"{base}/dashboard#journey=seller")
        assert key not in page.url
        shared = context.new_page()
        shared.goto(f"{base}/dashboard#journey=seller&from=2026-03-05&to=2026-03-09&campaign=spring")
        shared.fill("#key", key)
        shared.click("#login button")
        expect(shared.locator("body")).to_have_attribute("data-ready", "true", timeout=15000)
        expect(shared.locator("#journey")).to_have_value("seller")
        expect(shared.locator("#funnel-from")).to_have_value("2026-03-05")  # the funnel's window and filters too
        expect(shared.locator("#funnel-campaign")).to_have_value("spring")
        expect(shared.locator("#funnel-table")).to_contain_text("entered (previous period)")
        assert axes(shared, "counts-chart")["x"] == "stage of the Seller's journey"
        browser.close()

    assert problems == []
    assert all(url.startswith(base) or url.startswith("blob:") for url in requested), requested  # nothing from a CDN


AXE = Path(__file__).resolve().parents[1] / "node" / "node_modules" / "axe-core" / "axe.min.js"


def test_the_dashboard_has_no_serious_accessibility_violations(served):
    """axe-core (from tests/node, run in the page; the service never serves it) finds nothing serious
    or critical on the loaded dashboard: contrast, names of controls, table headers, landmarks."""
    base, key = served
    assert AXE.is_file(), "run scripts/ensure-node-sdks.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 1800}, bypass_csp=True)  # to inject axe only
        page = context.new_page()
        page.goto(f"{base}/dashboard")
        page.fill("#key", key)
        page.click("#login button")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15000)
        page.add_script_tag(path=str(AXE))
        found = page.evaluate("axe.run(document, { resultTypes: ['violations'] })")
        browser.close()
    serious = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:5])
               for v in found["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
