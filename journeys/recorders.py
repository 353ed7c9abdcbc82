"""The event store's PostgreSQL recorder, with one fix to eventsourcing's.

eventsourcing 9.5 inserts events inside a psycopg pipeline. A single insert of
tens of megabytes (a batch of large touchpoints) then never completes: the
client waits in `Pipeline.sync` while the server waits for the rest of the
query, holding the events table's exclusive lock, so every later write hangs.
The same statements in a plain transaction take a few more round trips and
finish in seconds.
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.utils import retry


class PostgresJourneysRecorder(PostgresProcessRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)  # the tracking record, if any
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
