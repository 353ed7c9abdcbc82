"""The event store's recorders: eventsourcing's, plus a touchpoint index in the same transaction.

The index holds each stored touchpoint's fingerprint by (record, touchpoint id). It
is written in the transaction that stores the events, so a writer finds duplicates
and conflicts with one indexed look-up instead of replaying a customer's whole
history (which took over a second at 50,000 touchpoints). Its primary key also
makes the database itself refuse a touchpoint stored twice in one record.

PostgreSQL: eventsourcing 9.5 inserts events inside a psycopg pipeline. A single
insert of tens of megabytes (a batch of large touchpoints) then never completes:
the client waits in `Pipeline.sync` while the server waits for the rest of the
query, holding the events table's exclusive lock, so every later write hangs. Here
a plain transaction holds the same lock and COPYs the events, the index and the
chain rows (psycopg writes COPY rows in C; eventsourcing's INSERT from an array of
composite values encoded each event in Python).

Both also keep the events' hash chain (journeys/chain.py): a row per event, written in
the events' transaction, and the checkpoints that seal the chains' heads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Composed, Identifier

from journeys.chain import GENESIS, event_hash
from journeys.storage.dialect import copy_rows

INDEX = "touchpoint_index"
INDEX_COLUMNS = "(record_id TEXT NOT NULL, touchpoint_id TEXT NOT NULL, fingerprint TEXT NOT NULL, " \
    "PRIMARY KEY (record_id, touchpoint_id))"

# Rows for the index: (record id, touchpoint id, fingerprint), given to EventStore.put(index=...).
IndexRows = Sequence[tuple[str, str, str]]

CHAIN = "event_chain"
CHAIN_COLUMNS = "(notification_id BIGINT PRIMARY KEY, record_id TEXT NOT NULL, version INTEGER NOT NULL, " \
    "hash TEXT NOT NULL, UNIQUE (record_id, version))"
CHECKPOINTS = "audit_checkpoints"
CHECKPOINT_COLUMNS = "(seq INTEGER PRIMARY KEY, position BIGINT NOT NULL, heads BIGINT NOT NULL, " \
    "merkle TEXT NOT NULL, previous TEXT NOT NULL, root TEXT NOT NULL, created_at TEXT NOT NULL)"


def chain_rows(
    stored_events: Sequence[StoredEvent],
    notification_ids: Sequence[int],
    previous: Callable[[list[tuple[str, int]]], dict[str, str]],
) -> list[tuple[int, str, int, str]]:
    """(notification id, record id, version, hash) for each event, linked to its record's previous one.

    `previous` looks up the stored hashes of (record id, version) pairs: the events
    just before the first of each record in this write.
    """
    records = [str(UUID(str(event.originator_id))) for event in stored_events]
    firsts: dict[str, int] = {}
    for record, event in zip(records, stored_events, strict=True):
        firsts.setdefault(record, event.originator_version)
    wanted = [(record, version - 1) for record, version in firsts.items() if version > 1]
    heads = previous(wanted) if wanted else {}
    missing = [f"{record} version {version}" for record, version in wanted if record not in heads]
    if missing:
        raise ValueError(f"event chain: no stored hash for {', '.join(missing[:3])} (the store needs its chain backfilled)")
    rows = []
    for record, event, notification_id in zip(records, stored_events, notification_ids, strict=True):
        digest = event_hash(heads.get(record, GENESIS), record, event.originator_version, event.topic, bytes(event.state))
        heads[record] = digest
        rows.append((notification_id, record, event.originator_version, digest))
    return rows


class SQLiteJourneysRecorder(SQLiteProcessRecorder):
    index_table = INDEX

    chain_table = CHAIN
    checkpoints_table = CHECKPOINTS

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {INDEX} {INDEX_COLUMNS}",
            f"CREATE TABLE IF NOT EXISTS {CHAIN} {CHAIN_COLUMNS}",
            f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} {CHECKPOINT_COLUMNS}",
        ]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        rows: IndexRows = kwargs.get("index") or ()
        if rows:
            c.executemany(f"INSERT INTO {INDEX} (record_id, touchpoint_id, fingerprint) VALUES (?, ?, ?)", rows)
        if stored_events:
            def previous(wanted: list[tuple[str, int]]) -> dict[str, str]:
                found = {}
                for record, version in wanted:
                    c.execute(f"SELECT hash FROM {CHAIN} WHERE record_id = ? AND version = ?", (record, version))
                    row = c.fetchone()
                    if row is not None:
                        found[record] = row[0]
                return found

            chained = chain_rows(stored_events, returning or (), previous)
            c.executemany(f"INSERT INTO {CHAIN} (notification_id, record_id, version, hash) VALUES (?, ?, ?, ?)", chained)
        return returning


class PostgresJourneysRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.index_table = f'"{datastore.schema}".{INDEX}'
        self.chain_table = f'"{datastore.schema}".{CHAIN}'
        self.checkpoints_table = f'"{datastore.schema}".{CHECKPOINTS}'
        self.sql_create_statements += [
            Composed([SQL(f"CREATE TABLE IF NOT EXISTS {table} {columns}")])
            for table, columns in ((self.index_table, INDEX_COLUMNS), (self.chain_table, CHAIN_COLUMNS),
                                   (self.checkpoints_table, CHECKPOINT_COLUMNS))
        ]

    def _copy_events(self, curs: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Insert the events by binary COPY, under eventsourcing's table lock, and return their
        notification ids in the events' order. eventsourcing's INSERT from an array of composite
        values encodes each event in Python (about 50 µs an event, a tenth of a batch's write);
        psycopg writes COPY rows in C. The lock makes this the only writer: the ids above the
        largest before the COPY are these events', issued by the sequence in the rows' order. A
        key already taken fails the COPY with an IntegrityError, as it failed the INSERT."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.max_notification_id_statement)
        row = curs.fetchone()
        before = (row["max"] if row else None) or 0
        table = SQL("{schema}.{table}").format(schema=Identifier(self.datastore.schema),
                                               table=Identifier(self.events_table_name))
        columns = SQL("(originator_id, originator_version, topic, state)")
        with curs.copy(SQL("COPY {table} {columns} FROM STDIN (FORMAT BINARY)").format(table=table, columns=columns)) as copy:
            copy.set_types([self.datastore.originator_id_type, "int8", "text", "bytea"])
            for event in stored_events:
                copy.write_row((event.originator_id, event.originator_version, event.topic, event.state))
        curs.execute(SQL("SELECT notification_id FROM {table} WHERE notification_id > %s ORDER BY notification_id")
                     .format(table=table), [before])
        ids = [r["notification_id"] for r in curs.fetchall()]
        if len(ids) != len(stored_events):
            raise ProgrammingError(f"{len(stored_events)} events copied, {len(ids)} notification ids found after them")
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)  # the tracking record, if any
            if not stored_events:
                return None
            notification_ids = self._copy_events(curs, stored_events)
            rows: IndexRows = kwargs.get("index") or ()
            copy_rows(curs, self.index_table, ("record_id", "touchpoint_id", "fingerprint"), rows)

            def previous(wanted: list[tuple[str, int]]) -> dict[str, str]:
                curs.execute(
                    f"SELECT c.record_id, c.hash FROM {self.chain_table} c "
                    "JOIN unnest(%b::text[], %b::int[]) AS w(record_id, version) USING (record_id, version)",
                    [[r for r, _ in wanted], [v for _, v in wanted]],
                )
                return {row["record_id"]: row["hash"] for row in curs.fetchall()}

            chained = chain_rows(stored_events, notification_ids or (), previous)
            copy_rows(curs, self.chain_table, ("notification_id", "record_id", "version", "hash"), chained)
            return notification_ids
