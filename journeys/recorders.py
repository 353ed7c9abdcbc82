"""The event store's recorders: eventsourcing's, plus a touchpoint index in the same transaction.

The index holds each stored touchpoint's fingerprint by (record, touchpoint id). It
is written in the transaction that stores the events, so a writer finds duplicates
and conflicts with one indexed look-up instead of replaying a customer's whole
history (which took over a second at 50,000 touchpoints). Its primary key also
makes the database itself refuse a touchpoint stored twice in one record.

PostgreSQL: eventsourcing 9.5 inserts events inside a psycopg pipeline. A single
insert of tens of megabytes (a batch of large touchpoints) then never completes:
the client waits in `Pipeline.sync` while the server waits for the rest of the
query, holding the events table's exclusive lock, so every later write hangs. The
same statements in a plain transaction take a few more round trips and finish in
seconds.
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL

INDEX = "touchpoint_index"
INDEX_COLUMNS = "(record_id TEXT NOT NULL, touchpoint_id TEXT NOT NULL, fingerprint TEXT NOT NULL, " \
    "PRIMARY KEY (record_id, touchpoint_id))"

# Rows for the index: (record id, touchpoint id, fingerprint), given to EventStore.put(index=...).
IndexRows = Sequence[tuple[str, str, str]]


class SQLiteJourneysRecorder(SQLiteProcessRecorder):
    index_table = INDEX

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), f"CREATE TABLE IF NOT EXISTS {INDEX} {INDEX_COLUMNS}"]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        rows: IndexRows = kwargs.get("index") or ()
        if rows:
            c.executemany(f"INSERT INTO {INDEX} (record_id, touchpoint_id, fingerprint) VALUES (?, ?, ?)", rows)
        return returning


class PostgresJourneysRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.index_table = f'"{datastore.schema}".{INDEX}'
        self.sql_create_statements.append(SQL(f"CREATE TABLE IF NOT EXISTS {self.index_table} {INDEX_COLUMNS}"))

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)  # the tracking record, if any
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            notification_ids = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            rows: IndexRows = kwargs.get("index") or ()
            if rows:
                curs.execute(
                    f"INSERT INTO {self.index_table} (record_id, touchpoint_id, fingerprint) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])",
                    [list(column) for column in zip(*rows, strict=True)],
                )
            return notification_ids
