"""PostgreSQL goes away while touchpoints flow: 503 with Retry-After, /health says so, and
everything catches up when it is back, with nothing lost or doubled and no restart."""

from __future__ import annotations

import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import _connect
from tests.factories import payload, rid

pytestmark = pytest.mark.postgres


@contextmanager
def outage(postgres_url: str):
    """Refuse new connections to the test database and terminate every backend serving it."""
    database = urlsplit(postgres_url).path.lstrip("/") or "postgres"
    admin_url = postgres_url.replace(f"/{database}", "/postgres", 1)
    with _connect(admin_url) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [database],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.fixture
def settings(postgres_schema_url):
    from journeys.settings import Settings

    return Settings(database_url=postgres_schema_url, projection_poll_interval=0.01)


def test_backends_terminated_while_touchpoints_flow(client: TestClient, postgres_url: str):
    answers: dict[str, int] = {}

    def send(i: int) -> int:
        answer = client.post("/touchpoints", json=payload(f"t{i}", "email_opened", i / 100, f"c{i % 7}"))
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) > 0 and answer.json()["detail"]
        else:
            assert answer.status_code in (200, 201), answer.text
        answers[f"t{i}"] = answer.status_code
        return answer.status_code

    for i in range(30):
        send(i)
    with outage(postgres_url):
        during = [send(i) for i in range(30, 33)]
        health = client.get("/health")
        assert health.status_code == 503, health.text
        assert health.headers["retry-after"]
        down = [c for c in health.json()["components"] if not c["ok"]]
        assert down and down[0]["name"] == "database"
    assert 503 in during
    # Back: the publisher retries what was refused; nothing needs a restart.
    for i in range(30, 60):
        deadline = time.monotonic() + 30
        while send(i) == 503:
            assert time.monotonic() < deadline, "writes did not recover"
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        health = client.get("/health")
        if health.status_code == 200 and health.json()["projection_lag"] == 0:
            break
        assert time.monotonic() < deadline, health.text
        time.sleep(0.2)
    system = client.app.state.system
    stored = sum(len(system.view.touchpoints_of(rid(system, f"c{k}"))) for k in range(7))
    assert stored == 60  # every touchpoint once: none lost, none doubled
    assert health.json()["components"][1]["name"] == "projection"


def _timed(call):
    start = time.monotonic()
    answer = call()
    return answer, time.monotonic() - start


def test_an_outage_answers_503_within_a_second_and_service_is_back_within_two(client: TestClient, postgres_url: str):
    """A read waited 24 s for its 503 (eventsourcing retries each call ten times, each waiting for the
    pool) and writes came back up to 44 s after the database (the pool's reconnect back-off)."""
    for i in range(5):
        assert client.post("/touchpoints", json=payload(f"w{i}", "email_opened", i, "acme")).status_code == 201
    assert client.get("/readyz").status_code == 200
    with outage(postgres_url):
        first, waited = _timed(lambda: client.get("/customers/acme/history"))
        assert first.status_code == 503 and waited < 2.0 + 1.5, waited  # bounded by database_timeout (2 s)
        calls = {
            "stages": lambda: client.get("/customers/acme/stages"),
            "history": lambda: client.get("/customers/acme/history"),
            "write": lambda: client.post("/touchpoints", json=payload("w9", "email_opened", 9, "acme")),
            "health": lambda: client.get("/health"),
            "readyz": lambda: client.get("/readyz"),
        }
        deadline = time.monotonic() + 16  # long enough that psycopg's back-off waits 16 s for its next try
        while time.monotonic() < deadline:
            for name, call in calls.items():
                answer, took = _timed(call)
                assert answer.status_code == 503, (name, answer.text)
                assert took < 1.0, (name, took)
                assert name == "readyz" or answer.headers["retry-after"]
            assert client.get("/livez").status_code == 200  # the process itself is fine
            time.sleep(0.5)
    back = time.monotonic()
    while client.post("/touchpoints", json=payload("w9", "email_opened", 9, "acme")).status_code == 503:
        assert time.monotonic() - back < 2.0, "writes did not come back within 2 s of the database"
        time.sleep(0.05)
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() - back < 3.0, "not ready within 3 s of the database"
        time.sleep(0.05)


def test_five_processes_starting_at_once_on_a_new_schema_all_start(postgres_schema_url: str, tmp_path):
    """Concurrent CREATE TABLE IF NOT EXISTS of one table fails in PostgreSQL (a unique violation in
    its catalogue): one of `journeys consume` and `journeys project` started together died of it."""
    import os
    import subprocess
    import sys

    start_at = time.time() + 3  # every process is imported and waiting by then
    script = (
        "import time, sys; from journeys.settings import Settings; from projections.system import System\n"
        f"time.sleep(max(0, {start_at} - time.time()))\n"
        f"s = System.build(Settings(database_url={postgres_schema_url!r}, key_file={str(tmp_path / 'k')!r}))\n"
        "from journeys.storage.api_keys import KeyStore; KeyStore(s.view); s.runner.catch_up(); s.close(); print('started')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])}
    processes = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(5)]
    results = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, results):
        assert process.returncode == 0 and "started" in out, err[-2000:]
