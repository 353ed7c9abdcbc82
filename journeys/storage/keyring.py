"""The keyring: which record holds a customer's data, and the data key that opens it.

One row per customer record: a random record id (the Customer aggregate's id),
the customer's pseudonym (for lookups by key) and its data key, wrapped by the
master key. Erasure blanks the pseudonym and the wrapped key in one statement:
the record can no longer be found by key, nor its personal data read, anywhere.
A later touchpoint with the same key then starts a new record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from journeys.crypto import DataKey, Secrets
from journeys.storage.tables import SqlStore, ts

CHUNK = 500


@dataclass(frozen=True)
class Erasure:
    record_id: UUID
    erased_at: datetime
    erased_by: str


class Keyring:
    def __init__(self, store: SqlStore, secrets: Secrets, cache_size: int = 10_000):
        self.store = store
        self.secrets = secrets
        # Unwrapped data keys by their wrapped form, to spare an AES unwrap per customer per
        # batch. Only a row read from the database just now is ever looked up here, so an
        # erased record's key (its row blanked) is never used again, by any process.
        self.cache_size = cache_size
        self._unwrapped: OrderedDict[str, DataKey] = OrderedDict()
        self._lock = threading.Lock()
        self.table = store.table("customer_keys")
        store.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (record_id TEXT PRIMARY KEY, subject TEXT UNIQUE, "
            "wrapped_key TEXT, created_at TEXT NOT NULL, erased_at TEXT, erased_by TEXT, "
            "erasure_recorded INTEGER NOT NULL DEFAULT 0)"
        )

    def find(self, customer_key: str) -> UUID | None:
        """The current record of a customer key (None: never seen, or erased)."""
        rows = self.store.query(
            f"SELECT record_id FROM {self.table} WHERE subject = ?", [self.secrets.pseudonym(customer_key)]
        )
        return UUID(rows[0]["record_id"]) if rows else None

    def resolve(self, customer_keys: Iterable[str]) -> dict[str, tuple[UUID, DataKey]]:
        """Each key's record and data key, creating both for keys not seen before."""
        subjects = {self.secrets.pseudonym(k): k for k in set(customer_keys)}
        found = self._by_subject(list(subjects))
        missing = [s for s in subjects if s not in found]
        if missing:
            now = ts(datetime.now(UTC))
            made = []
            for subject in missing:
                record_id = str(uuid4())
                key, raw = DataKey.generate()
                made.append((record_id, subject, self.secrets.wrap(raw, record_id), key))
            # A concurrent writer may create the same customer: its row wins, and both use it.
            inserted = self.store.execute_many(
                f"INSERT INTO {self.table} (record_id, subject, wrapped_key, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (subject) DO NOTHING",
                [[record_id, subject, wrapped, now] for record_id, subject, wrapped, _ in made],
            )
            if inserted == len(made):  # every row is ours: no need to read them back and unwrap them
                for record_id, subject, wrapped, key in made:
                    found[subject] = (UUID(record_id), key)
                    self._remember(wrapped, key)
            else:
                found.update(self._by_subject(missing))
        return {subjects[s]: record for s, record in found.items()}

    def _by_subject(self, subjects: list[str]) -> dict[str, tuple[UUID, DataKey]]:
        return {row["subject"]: (UUID(row["record_id"]), self._unwrap(row)) for row in self._rows_where_in("subject", subjects)}

    def data_keys(self, record_ids: Iterable[UUID]) -> dict[UUID, DataKey]:
        """The data keys of records not erased (an erased record is absent)."""
        return {UUID(row["record_id"]): self._unwrap(row) for row in self._rows_where_in("record_id", [str(i) for i in set(record_ids)])}

    def _unwrap(self, row: Any) -> DataKey:
        wrapped = row["wrapped_key"]
        with self._lock:
            key = self._unwrapped.get(wrapped)
            if key is not None:
                self._unwrapped.move_to_end(wrapped)
                return key
        key = self.secrets.unwrap(wrapped, row["record_id"])
        self._remember(wrapped, key)
        return key

    def _remember(self, wrapped: str, key: DataKey) -> None:
        with self._lock:
            self._unwrapped[wrapped] = key
            while len(self._unwrapped) > self.cache_size:
                self._unwrapped.popitem(last=False)

    def _rows_where_in(self, column: str, values: list[str]) -> list[Any]:
        """The rows not erased whose `column` is one of `values`, each looked up by index."""
        return self.store.rows_of(self.table, column, values, "x.wrapped_key IS NOT NULL",
                                  columns="x.record_id, x.subject, x.wrapped_key")

    def erase(self, record_ids: Sequence[UUID], by: str) -> int:
        """Destroy the records' data keys and their links to the customer keys, in one statement
        (all of a person's records or none); how many were not erased before."""
        with self._lock:
            self._unwrapped.clear()  # nothing of them stays in this process either
        if not record_ids:
            return 0
        return self.store.execute(
            f"UPDATE {self.table} SET subject = NULL, wrapped_key = NULL, erased_at = ?, erased_by = ? "
            f"WHERE erased_at IS NULL AND record_id IN ({', '.join('?' * len(record_ids))})",
            [ts(datetime.now(UTC)), by, *(str(r) for r in record_ids)],
        )

    def pending_erasures(self) -> list[Erasure]:
        """Erased records whose erasure event is not recorded yet (e.g. after a crash in between)."""
        rows = self.store.query(
            f"SELECT record_id, erased_at, erased_by FROM {self.table} "
            "WHERE erased_at IS NOT NULL AND erasure_recorded = 0"
        )
        return [Erasure(UUID(r["record_id"]), datetime.fromisoformat(r["erased_at"]), r["erased_by"]) for r in rows]

    def erasure_recorded(self, record_id: UUID) -> None:
        self.store.execute(f"UPDATE {self.table} SET erasure_recorded = 1 WHERE record_id = ?", [str(record_id)])

    def rewrap(self) -> int:
        """Wrap every data key under the current master key (after rotating it); how many changed."""
        current = self.secrets.master_key_id
        rows = self.store.query(f"SELECT record_id, wrapped_key FROM {self.table} WHERE wrapped_key IS NOT NULL")
        stale = [r for r in rows if not r["wrapped_key"].startswith(current + ":")]
        updates = [
            [self.secrets.wrap(self.secrets.unwrap_raw(r["wrapped_key"], r["record_id"]), r["record_id"]), r["record_id"]]
            for r in stale
        ]
        for start in range(0, len(updates), CHUNK):
            self.store.execute_many(
                f"UPDATE {self.table} SET wrapped_key = ? WHERE record_id = ? AND wrapped_key IS NOT NULL",
                updates[start : start + CHUNK],
            )
        return len(updates)

