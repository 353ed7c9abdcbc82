"""Fixtures: the same suite runs against the embedded SQLite default and PostgreSQL.

PostgreSQL comes from JOURNEYS_TEST_POSTGRES_URL when set, from testcontainers
when a Docker engine is reachable, and otherwise from the machine's own server
on 127.0.0.1:5432 (started by scripts/ensure-postgres.sh). Each test gets its
own schema, dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from journeys.settings import Settings
from projections.system import System

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    configured = os.environ.get("JOURNEYS_TEST_POSTGRES_URL")
    if configured:
        yield configured
    elif _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
    else:
        yield LOCAL_POSTGRES


def _connect(url: str) -> psycopg.Connection:
    parts = urlsplit(url)
    return psycopg.connect(
        dbname=parts.path.lstrip("/") or "postgres",
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        autocommit=True,
    )


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    base = postgres_url.split("?")[0]
    yield f"{base}?schema={schema}"
    with _connect(postgres_url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path) -> Settings:
    """Settings for one backend; tests using it run once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'journeys.db'}"
    else:
        url = request.getfixturevalue("postgres_schema_url")
    # A loaded CI machine can take more than the default 2 s to hand out a connection; the outage tests
    # that measure that bound build their own settings.
    return Settings(database_url=url, projection_poll_interval=0.01, key_file=str(tmp_path / "journeys.keys"), database_timeout=10)


@pytest.fixture
def store_urls(settings: Settings, tmp_path) -> Iterator[Callable[[], str]]:
    """New, empty stores of the backend under test, as many as a test asks for (hypothesis' examples,
    schemathesis' scenarios); PostgreSQL's schemas are dropped afterwards."""
    counter, schemas = itertools.count(), []

    def new() -> str:
        if settings.is_sqlite:
            return f"sqlite:///{tmp_path}/store{next(counter)}.db"
        schemas.append(f"test_{uuid.uuid4().hex[:12]}")
        return f"{settings.database_url.split('?')[0]}?schema={schemas[-1]}"

    yield new
    if schemas:
        with _connect(settings.database_url.split("?")[0]) as conn:
            for name in schemas:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    built = System.build(settings)
    yield built
    built.close()


@pytest.fixture
def keys(system: System):
    from journeys.storage.api_keys import KeyStore

    return KeyStore(system.view, cache_seconds=0)


@pytest.fixture
def client(system: System, keys):
    """The API with the projections running, called with an admin key."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from journeys.storage.api_keys import Role

    system.runner.start()
    key = keys.create("test-admin", Role.admin)
    with TestClient(create_app(system=system), headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


# -- Kafka --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    """A Kafka-protocol broker: configured, a testcontainers Kafka, or a local Tansu."""
    configured = os.environ.get("JOURNEYS_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    from tests.brokers import tansu

    with tansu(tmp_path_factory.mktemp("tansu") / "broker.log") as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka_settings(settings: Settings, kafka_bootstrap: str) -> Settings:
    """Settings with fresh topics and consumer group for one test."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    run = uuid.uuid4().hex[:8]
    topics = {"kafka_topic": f"touchpoints-{run}", "kafka_dead_letter_topic": f"touchpoints-{run}.dlq",
              "kafka_stage_changes_topic": f"stage-changes-{run}"}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1) for name in topics.values()])
    admin.close()
    return settings.model_copy(update={
        **topics, "kafka_bootstrap_servers": kafka_bootstrap, "kafka_group_id": f"journeys-{run}",
        "kafka_session_timeout_ms": 6000, "kafka_max_poll_interval_ms": 10000,
    })
