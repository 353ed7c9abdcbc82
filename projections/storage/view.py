"""The journey view: every instance's stages and stage history, and every touchpoint.

An instance ("subject") is a customer record, an account, a deal or a case: the
scope of the journeys kept for it. Positions are one row per journey and
subject, so a playbook may declare any journeys; segments are index range scans
on (journey, stage, subject).

One set of SQL serves SQLite and PostgreSQL: what differs is the store's dialect
(journeys/storage/dialect.py). The view is an eventsourcing TrackingRecorder, so
every write stores the position it reached in the same transaction; the two
classes below only bind the view to each dialect's tracking recorder.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from journeys.storage.dialect import Dialect, PostgreSQL, SQLite
from projections.storage.generations import Generations
from projections.storage.queries import Queries
from projections.storage.schema import kept_ddl
from projections.storage.writes import ProjectionWrites


class JourneyView(Queries, ProjectionWrites, Generations):
    """Reads and writes of the read models (see the modules of its parts)."""

    def kept_ddl(self) -> list[Any]:
        """The tables kept across generations, created with the tracking table."""
        return [self.dialect.ddl(s) for s in kept_ddl(self.table, self.dialect.serial_key)]


class SQLiteJourneyView(JourneyView, SQLiteTrackingRecorder):
    dialect = SQLite()

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + self.kept_ddl()

    def _tracking_table(self) -> str:
        return "tracking"


class PostgresJourneyView(JourneyView, PostgresTrackingRecorder):
    dialect = PostgreSQL()

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(self.kept_ddl())

    def _tracking_table(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'


VIEWS: dict[str, type[JourneyView]] = {SQLite.name: SQLiteJourneyView, PostgreSQL.name: PostgresJourneyView}


def view_class(dialect: Dialect) -> type[JourneyView]:
    """The view over the dialect's tracking recorder."""
    return VIEWS[dialect.name]
