"""Structured logs: `journeys serve` with JOURNEYS_LOG_FORMAT=json writes one JSON object a line,
each request's lines carry its id (the X-Request-ID answered), and no customer key appears."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from tests.brokers import free_port
from tests.factories import payload

CUSTOMER = "jane.secret@example.com"


def test_json_logs_carry_the_request_id_and_nothing_personal(tmp_path):
    port = free_port()
    env = {**os.environ, "JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path}/logs.db", "JOURNEYS_KEY_FILE": f"{tmp_path}/keys",
           "JOURNEYS_LOG_FORMAT": "json", "JOURNEYS_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=env, stdout=subprocess.PIPE,
                              stderr=open(tmp_path / "stderr.log", "wb"), text=True)
    try:
        key = ""
        while not key.startswith("jrn_"):
            line = server.stdout.readline()
            assert line, "the server exited before printing its first key: " + (tmp_path / "stderr.log").read_text()[-2000:]
            key = line.strip()
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/health", headers=headers, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        posted = requests.post(f"{base}/touchpoints", json=payload("t1", "demo_delivered", 0, CUSTOMER), headers=headers, timeout=10)
        asked = requests.get(f"{base}/customers/{CUSTOMER}/stages", headers=headers, timeout=10)
        assert posted.status_code == 201 and asked.status_code in (200, 404)
    finally:
        server.terminate()
        server.wait(20)
    text = (tmp_path / "stderr.log").read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "journeys.access"}
    for answer, route in ((posted, "/touchpoints"), (asked, "/customers/{customer_id}/stages")):
        line = access[answer.headers["x-request-id"]]
        assert (line["route"], line["status"]) == (route, answer.status_code) and line["duration_ms"] >= 0
    assert CUSTOMER not in text and "jane.secret" not in text
