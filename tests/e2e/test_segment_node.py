"""The Segment-compatible intake driven by Segment's official Node SDK (@segment/analytics-node,
installed from tests/node/package-lock.json by scripts/ensure-node-sdks.sh), which sends its
write key in the body rather than as basic auth."""

from __future__ import annotations

import subprocess
from pathlib import Path

from api.main import create_app
from journeys.storage.api_keys import KeyStore, Role
from projections.system import System
from tests.serving import serve

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def test_the_node_sdk_records_and_links(system: System):
    assert (NODE_DIR / "node_modules" / "@segment" / "analytics-node").is_dir(), "run scripts/ensure-node-sdks.sh"
    system.runner.start()
    key = KeyStore(system.view, cache_seconds=0).create("node-source", Role.publisher)
    with serve(create_app(system=system)) as base:
        sent = subprocess.run(["node", str(NODE_DIR / "segment_node.mjs"), base, key],
                              capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr + sent.stdout
    visitor = {t.touchpoint_id: t for t in system.app.replay("node-visitor").touchpoints}
    buyer = {t.touchpoint_id: t for t in system.app.replay("node-buyer@example.com").touchpoints}
    assert visitor["n1"].type == "pricing_page_viewed" and sorted(buyer) == ["n3", "n4"]
    demo = buyer["n3"]
    assert (demo.type, demo.channel, demo.campaign, demo.deal_id) == ("demo_delivered", "ads", "node-launch", "D-N1")
    assert demo.source == "segment/@segment/analytics-node"
    system.runner.catch_up()
    record = str(system.keyring.find("node-visitor"))
    root = system.view.roots([record])[record]
    assert root == str(system.keyring.find("node-buyer@example.com"))  # the identify linked them
    merged = system.view.customer(root)["stages"].positions
    assert merged["awareness"].stage == "Evaluating" and merged["seller"].stage == "Presenting"
