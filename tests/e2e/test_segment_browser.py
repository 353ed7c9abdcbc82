"""The Segment-compatible intake driven by Segment's browser SDK (analytics.js, the
`@segment/analytics-next` package from tests/node) in the system's headless Chromium: a page
view with UTM parameters, an identify (which links the browser's anonymous id to the user)
and a track, each posted by the SDK itself to /v1/p, /v1/i and /v1/t.

The SDK and the page are served beside the API, same origin; the SDK is given its settings
(no request to Segment's CDN) and its lazily loaded bundles come from the package too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.staticfiles import StaticFiles
from playwright.sync_api import sync_playwright

from api.main import create_app
from journeys.storage.api_keys import KeyStore, Role
from projections.system import System
from tests.e2e.test_dashboard_browser import CHROMIUM
from tests.serving import serve
from tests.waiting import wait_until

UMD = Path(__file__).resolve().parents[1] / "node" / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
BUYER = "browser-buyer@example.com"
PAGE = """<!doctype html><html><head><title>Pricing</title>
<script src="/sdk-test/analytics-next/bundles/index.js"></script></head><body><script>
window.sendAll = async function (key) {
  const settings = {integrations: {"Segment.io": {apiKey: key, apiHost: location.host + "/v1", protocol: "http"}}};
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    {writeKey: key, cdnURL: location.origin + "/sdk-test", cdnSettings: settings});
  await analytics.page("Pricing");
  await analytics.identify("%s", {plan: "pro"});
  await analytics.track("Demo Completed", {deal_id: "D-B1"});
  return analytics.user().anonymousId();
};
</script></body></html>""" % BUYER


def test_the_browser_sdk_records_links_and_tracks(system: System, tmp_path):
    assert (UMD / "index.js").is_file(), "run scripts/ensure-node-sdks.sh"
    (tmp_path / "page.html").write_text(PAGE)
    system.runner.start()
    key = KeyStore(system.view, cache_seconds=0).create("browser-source", Role.publisher)
    app = create_app(system=system)
    app.mount("/sdk-test/analytics-next/bundles", StaticFiles(directory=UMD))
    app.mount("/sdk-test/page", StaticFiles(directory=tmp_path))
    failed: list[str] = []
    with serve(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{base}/sdk-test/page/page.html?utm_campaign=browser-launch&utm_medium=email")
            anonymous = page.evaluate("key => window.sendAll(key)", key)
        finally:
            browser.close()
    assert not failed, failed
    assert not [u for u in failed if "segment.com" in u]

    def stored(customer: str) -> list:
        try:
            return system.app.replay(customer).touchpoints
        except Exception:
            return []

    wait_until(lambda: len(stored(anonymous)) == 1 and len(stored(BUYER)) == 1, 20, "the SDK's three calls")
    view, demo = stored(anonymous)[0], stored(BUYER)[0]
    assert (view.type, view.channel, view.campaign) == ("pricing_page_viewed", "email", "browser-launch")
    assert (demo.type, demo.deal_id, demo.source) == ("demo_delivered", "D-B1", "segment/analytics.js")
    system.runner.catch_up()
    record = str(system.keyring.find(anonymous))
    assert system.view.roots([record])[record] == str(system.keyring.find(BUYER))  # identify linked them
