"""Loads many customers at once: one query per batch instead of one per customer.

Aggregates are kept in an in-process LRU cache and brought up to date with the
events stored after their cached version (written by any process), all in one
query. A failed save must evict what it touched (`evict`), since the cached
objects were mutated by the commands that failed to be stored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from journeys.customer import Customer

CHUNK = 500


class CustomerRepository:
    def __init__(self, recorder: ApplicationRecorder, mapper: Mapper[UUID], cache_size: int):
        self.recorder = recorder
        self.mapper = mapper
        self.cache_size = cache_size
        self.cache: OrderedDict[UUID, Customer] = OrderedDict()

    def get_many(self, ids: Iterable[UUID]) -> dict[UUID, Customer]:
        """The current state of the customers that exist among `ids`."""
        wanted = {i: (self.cache[i].version if i in self.cache else 0) for i in ids}
        found: dict[UUID, Any] = {i: self.cache.get(i) for i in wanted}
        for stored in self._select_after(wanted):
            event = self.mapper.to_domain_event(stored)
            found[event.originator_id] = event.mutate(found[event.originator_id])
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
        return [
            StoredEvent(
                originator_id=row["originator_id"] if isinstance(row["originator_id"], UUID) else UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]
