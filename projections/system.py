"""The composition root: the application, its view, projection and runner, from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import psycopg
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from psycopg import sql

from journeys.application import JourneysApp, Recorded
from journeys.playbook import Playbook, load_playbook
from journeys.settings import Settings
from journeys.touchpoint import Touchpoint
from projections.runner import ProjectionRunner
from projections.stages import StageProjection
from projections.view import JourneyViewSQL, PostgresJourneyView, SQLiteJourneyView


@dataclass
class System:
    settings: Settings
    playbook: Playbook
    app: JourneysApp
    view: JourneyViewSQL
    runner: ProjectionRunner

    @classmethod
    def build(cls, settings: Settings, playbook: Playbook | None = None) -> System:
        playbook = playbook or load_playbook(settings.playbook)
        env = settings.eventsourcing_env()
        if not settings.is_sqlite:
            ensure_schema(env)
        app = JourneysApp(playbook, env=env, cache_size=settings.aggregate_cache_size)
        view_class = SQLiteJourneyView if settings.is_sqlite else PostgresJourneyView
        factory = InfrastructureFactory.construct(Environment(StageProjection.name, env))
        view = factory.tracking_recorder(view_class)
        runner = ProjectionRunner(
            app,
            StageProjection(view, playbook),
            batch_size=settings.projection_batch_size,
            poll_interval=settings.projection_poll_interval,
        )
        return cls(settings, playbook, app, view, runner)

    def record(self, touchpoints: Sequence[Touchpoint], *args: Any, **kwargs: Any) -> Recorded:
        """Record touchpoints (see JourneysApp.record) and wake the projections."""
        recorded = self.app.record(touchpoints, *args, **kwargs)
        if recorded.position is not None:
            self.runner.poke()
        return recorded

    def close(self) -> None:
        self.runner.stop()
        self.app.close()
        self.view.datastore.close()


def ensure_schema(env: dict[str, str]) -> None:
    """eventsourcing does not create a PostgreSQL schema; make sure it exists."""
    schema = env.get("POSTGRES_SCHEMA", "public")
    if schema == "public":
        return
    with psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        autocommit=True,
    ) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
