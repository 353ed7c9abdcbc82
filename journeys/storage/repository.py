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

from journeys.customer import Customer
from journeys.storage.dialect import Dialect

CHUNK = 500
SNAPSHOT_INTERVAL = 200


class CustomerRepository:
    def __init__(
        self, recorder: ApplicationRecorder, snapshots: EventStore[UUID] | None, mapper: Mapper[UUID], cache_size: int,
        dialect: Dialect,
    ):
        self.recorder = recorder
        self.dialect = dialect
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
        wanted, params = self.dialect.values("w", [("r", "text"), ("t", "text")], items)
        each = self.dialect.join_each("w", recorder.index_table, "i", "i.record_id = w.r AND i.touchpoint_id = w.t")
        return self._rows(recorder, f"{wanted} SELECT i.record_id, i.touchpoint_id, i.fingerprint FROM {each}", params)

    def _latest_snapshots(self, ids: list[UUID]) -> list[Any]:
        if self.snapshots is None or not ids:
            return []
        recorder: Any = self.snapshots.recorder
        table = self.dialect.qualified(recorder.datastore, recorder.events_table_name)
        found = []
        for start in range(0, len(ids), CHUNK):
            wanted, params = self.dialect.values("w", [("id", "uuid")], [[i] for i in ids[start : start + CHUNK]])
            each = self.dialect.join_each("w", table, "s", f"s.originator_id = w.id AND s.originator_version = "
                                          f"(SELECT MAX(l.originator_version) FROM {table} l WHERE l.originator_id = w.id)")
            rows = self._rows(recorder, f"{wanted} SELECT s.* FROM {each}", params)
            found += [self.mapper.to_domain_event(_stored(row)) for row in rows]
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
        recorder: Any = self.recorder
        table = self.dialect.qualified(recorder.datastore, recorder.events_table_name)
        wanted, params = self.dialect.values("w", [("id", "uuid"), ("v", "bigint")], items)
        each = self.dialect.join_each("w", table, "e", "e.originator_id = w.id AND e.originator_version > w.v")
        rows = self._rows(recorder, f"{wanted} SELECT e.originator_id, e.originator_version, e.topic, e.state "
                                    f"FROM {each} ORDER BY e.originator_id, e.originator_version", params)
        return [_stored(row) for row in rows]

    def _rows(self, recorder: Any, statement: str, params: list[Any]) -> list[Any]:
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return c.fetchall()


def _stored(row: Any) -> StoredEvent:
    originator_id = row["originator_id"]
    return StoredEvent(
        originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
