"""The dashboard over a million customers: each panel in a real browser beside the endpoints it calls.

Fills a store as bench/analytics.py does (1M customers, ~12M transitions), serves the API with
uvicorn, logs in to /dashboard in the system's headless Chromium (Playwright), then for each
panel, RUNS times in turn:
  - in the page: the panel's own function (counts(), funnel(), ...) from its first request to
    its table and chart drawn, timed in the browser (performance.now around the awaited call);
  - the endpoints: the same URLs the panel requested, fetched one after the other with httpx.
Prints the medians and their ratio (page / endpoints): what the page adds to what the API takes.
Also the time from "log in" to every panel drawn (they load at once, so they share the server).

    .venv/bin/python bench/dashboard.py [--customers 1000000] [--runs 10] [--backend sqlite]

Chromium: /usr/bin/chromium (scripts/ensure-chromium.sh), or JOURNEYS_CHROMIUM.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
from analytics import fill
from backends import add_backend_option, each_store
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).parents[1]))
from api.main import create_app  # noqa: E402
from journeys.settings import Settings  # noqa: E402
from journeys.storage.api_keys import KeyStore, Role  # noqa: E402
from projections.system import System  # noqa: E402
from tests.serving import serve  # noqa: E402

CHROMIUM = os.environ.get("JOURNEYS_CHROMIUM", "/usr/bin/chromium")
MONTH = {"#funnel-from": "2026-03-01", "#funnel-to": "2026-04-01"}
# (label, form fields to set first, the panel's call in the page)
PANELS = [
    ("stage counts", {}, "counts()"),
    ("funnel, all time", {}, "funnel()"),
    ("funnel, one month and the month before", MONTH, "funnel()"),
    ("funnel, one month and before, one campaign", {**MONTH, "#funnel-campaign": "campaign-07"}, "funnel()"),
    ("time in stage", {}, "timeInStage()"),
    ("alignment buyer x seller", {}, "alignment()"),
    ("attribution, Evaluation, all time", {}, "attribution()"),
    ("cost, all time", {}, "cost()"),
    ("cost, one month and the month before", MONTH, "cost()"),
    ("segment buyer=Evaluation, first page", {}, "openSegment({journey: 'buyer', stage: 'Evaluation'})"),
    ("timeline of one customer", {"#timeline-customer": "cust-00000042@bench.example"}, "showTimeline()"),
]
FIELDS = ["#funnel-from", "#funnel-to", "#funnel-campaign", "#timeline-customer"]


def measure(backend: str, settings: Settings, n: int, runs: int) -> None:
    system = System.build(settings.model_copy(update={"rate_limit_per_minute": 1_000_000}))
    try:
        t = time.perf_counter()
        transitions = fill(system, n, keys=True)
        print(f"{backend}: {n:,} customers, {transitions:,} transitions (filled in {time.perf_counter() - t:.0f} s); "
              f"medians of {runs} runs", flush=True)
        key = KeyStore(system.view, cache_seconds=0).create("dashboard-bench", Role.marketer)
        with serve(create_app(system=system)) as base, sync_playwright() as p, httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as client:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url) if r.resource_type == "fetch" else None)
            page.goto(f"{base}/dashboard")
            page.fill("#key", key)
            t = time.perf_counter()
            page.click("#login button")
            page.wait_for_selector("body[data-ready=true]", timeout=600_000)
            loaded = (time.perf_counter() - t) * 1000
            print(f"  {'log in to every panel drawn':48s} {loaded:9.1f} ms (the panels load at once)", flush=True)
            print(f"  {'panel':48s} {'endpoints':>9s}    {'page':>9s}    page/endpoints", flush=True)
            for label, fields, call in PANELS:
                for field in FIELDS:
                    page.fill(field, fields.get(field, ""))
                in_page, direct = [], []
                for _ in range(runs):
                    requested.clear()
                    in_page.append(page.evaluate(f"async () => {{ const t = performance.now(); await {call}; "
                                                 "return performance.now() - t; }"))
                    urls = list(requested)
                    assert urls, f"{label}: the page requested nothing"
                    t = time.perf_counter()
                    for url in urls:
                        response = client.get(url.removeprefix(base))
                        assert response.status_code == 200, (url, response.status_code, response.text[:200])
                    direct.append((time.perf_counter() - t) * 1000)
                shown, api = statistics.median(in_page), statistics.median(direct)
                print(f"  {label:48s} {api:9.1f} ms {shown:9.1f} ms {shown / api:6.2f}  "
                      f"({len(urls)} request{'s' if len(urls) > 1 else ''})", flush=True)
            status = page.inner_text("#status")
            assert status.startswith("Playbook"), status  # a panel that failed says so there
            browser.close()
    finally:
        system.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    add_backend_option(parser)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh")
    for backend, settings in each_store(args.backend):
        measure(backend, settings, args.customers, args.runs)


if __name__ == "__main__":
    main()
