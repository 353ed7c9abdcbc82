"""Loads many customers at once: one query per batch instead of one per customer.

Aggregates are kept in an in-process LRU cache and brought up to date with the
events stored after their cached version (written by any process), all in one
query. A customer not in the cache starts from its latest snapshot (taken every
SNAPSHOT_INTERVAL events), so a cold load costs the same at 50 or 50,000
touchpoints. A failed save must evict what it touched (`evict`), since the cached
objects were mutated by the commands that failed to be stored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import ApplicationRecorder, EventStore, Mapper, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from journeys.customer import Customer

CHUNK = 500
SNAPSHOT_INTERVAL = 200


class CustomerRepository:
    def __init__(
        self, recorder: ApplicationRecorder, snapshots: EventStore[UUID] | None, mapper: Mapper[UUID], cache_size: int
    ):
        self.recorder = recorder
        self.snapshots = snapshots
        self.mapper = mapper
        self.cache_size = cache_size
        self.cache: OrderedDict[UUID, Customer] = OrderedDict()

    def get_many(self, ids: Iterable[UUID]) -> dict[UUID, Customer]:
        """The current state of the customers that exist among `ids`."""
        found: dict[UUID, Any] = {i: self.cache.get(i) for i in ids}
        for snapshot in self._latest_snapshots([i for i, c in found.items() if c is None]):
            found[snapshot.originator_id] = snapshot.mutate(None)
        wanted = {i: (c.version if c is not None else 0) for i, c in found.items()}
        for stored in self._select_after(wanted):
            event = self.mapper.to_domain_event(stored)
            found[event.originator_id] = event.mutate(found[event.originator_id])  # type: ignore[attr-defined]  # aggregate events
        return {i: c for i, c in found.items() if c is not None}

    def keep(self, customers: Iterable[Customer]) -> None:
        """Cache customers whose state is known to be stored."""
        if not self.cache_size:
            return
        for customer in customers:
            self.cache[customer.id] = customer
            self.cache.move_to_end(customer.id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def snapshot_if_due(self, customers: Iterable[Customer], versions_before: dict[UUID, int]) -> None:
        """Snapshot the saved customers whose version crossed a multiple of SNAPSHOT_INTERVAL."""
        if self.snapshots is None:
            return
        due = [
            Snapshot.take(c) for c in customers
            if c.version // SNAPSHOT_INTERVAL > versions_before.get(c.id, 0) // SNAPSHOT_INTERVAL
        ]
        if due:
            self.snapshots.put(due)

    def fingerprints(self, pairs: Iterable[tuple[UUID, str]]) -> dict[tuple[UUID, str], str]:
        """The stored fingerprints of these (record, touchpoint id) pairs, from the touchpoint index."""
        items = [(str(r), t) for r, t in pairs]
        found: dict[tuple[UUID, str], str] = {}
        for start in range(0, len(items), CHUNK):
            for row in self._index_chunk(items[start : start + CHUNK]):
                found[(UUID(row["record_id"]), row["touchpoint_id"])] = row["fingerprint"]
        return found

    def _index_chunk(self, items: list[tuple[str, str]]) -> list[Any]:
        recorder: Any = self.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            statement: Any = SQL(
                "SELECT i.record_id, i.touchpoint_id, i.fingerprint FROM {table} i "
                "JOIN unnest(%s::text[], %s::text[]) AS w(r, t) ON i.record_id = w.r AND i.touchpoint_id = w.t"
            ).format(table=SQL(recorder.index_table))  # type: ignore[attr-defined]  # the subclass's (recorders.py)
            params: list[Any] = [[r for r, _ in items], [t for _, t in items]]
        else:
            values = ", ".join(["(?, ?)"] * len(items))
            statement = (
                f"WITH w(r, t) AS (VALUES {values}) SELECT i.record_id, i.touchpoint_id, i.fingerprint "
                f"FROM {recorder.index_table} i JOIN w ON i.record_id = w.r AND i.touchpoint_id = w.t"
            )
            params = [x for pair in items for x in pair]
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return c.fetchall()

    def _latest_snapshots(self, ids: list[UUID]) -> list[Any]:
        if self.snapshots is None or not ids:
            return []
        recorder: Any = self.snapshots.recorder
        found = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            if isinstance(recorder, PostgresAggregateRecorder):
                table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
                statement: Any = SQL(
                    f"SELECT s.* FROM {table} s WHERE s.originator_id = ANY(%s::uuid[]) AND s.originator_version = "
                    f"(SELECT MAX(l.originator_version) FROM {table} l WHERE l.originator_id = s.originator_id)"
                )
                params: list[Any] = [chunk]
            else:
                table = recorder.events_table_name
                statement = (
                    f"SELECT s.* FROM {table} s WHERE s.originator_id IN ({', '.join('?' * len(chunk))}) "
                    f"AND s.originator_version = (SELECT MAX(l.originator_version) FROM {table} l "
                    "WHERE l.originator_id = s.originator_id)"
                )
                params = [i.hex for i in chunk]
            with recorder.datastore.transaction(commit=False) as c:
                c.execute(statement, params)
                found += [self.mapper.to_domain_event(_stored(row)) for row in c.fetchall()]
        return found

    def evict(self, ids: Iterable[UUID]) -> None:
        for i in ids:
            self.cache.pop(i, None)

    def _select_after(self, wanted: dict[UUID, int]) -> list[StoredEvent]:
        items = list(wanted.items())
        events: list[StoredEvent] = []
        for start in range(0, len(items), CHUNK):
            events += self._select_chunk(items[start : start + CHUNK])
        return events

    def _select_chunk(self, items: list[tuple[UUID, int]]) -> list[StoredEvent]:
        recorder = self.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            statement: Any = SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM {schema}.{table} e JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, v) "
                "ON e.originator_id = w.id AND e.originator_version > w.v "
                "ORDER BY e.originator_id, e.originator_version"
            ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))
            params: list[Any] = [[i for i, _ in items], [v for _, v in items]]
        elif isinstance(recorder, SQLiteApplicationRecorder):
            values = ", ".join(["(?, ?)"] * len(items))
            statement = (
                f"WITH w(id, v) AS (VALUES {values}) "
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                f"FROM {recorder.events_table_name} e JOIN w "
                "ON e.originator_id = w.id AND e.originator_version > w.v "
                "ORDER BY e.originator_id, e.originator_version"
            )
            params = [x for i, v in items for x in (i.hex, v)]
        else:  # pragma: no cover - only the two persistence modules we support
            raise TypeError(f"unsupported recorder {type(recorder).__name__}")
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            rows = c.fetchall()
        return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredEvent:
    originator_id = row["originator_id"]
    return StoredEvent(
        originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
