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
