"""The hash chains as stored: events in chain order with their chain rows, chain heads, the
checkpoints that seal them, and chaining a store from before the chain.

The hashing itself is journeys/chain.py; the chain rows are written by the recorders
(recorders.py) in the events' own transaction. Verification and export are audit.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from journeys.chain import GENESIS, Checkpoint, event_hash, leaf, merkle_root
from journeys.storage.dialect import Dialect

PAGE = 5_000


class ChainStore:
    """Reads of the events and their chains, and the checkpoints, over one store.

    `db` is any object with `query(sql, params)` and `execute(sql, params)` taking '?'
    parameters on the events' database (the journey view is one); `recorder` the
    application's recorder, which names the tables.
    """

    def __init__(self, db: Any, recorder: Any, dialect: Dialect):
        self.db = db
        self.dialect = dialect
        self.events = dialect.qualified(recorder.datastore, recorder.events_table_name)
        self.nid = dialect.notification_id
        self.chain = recorder.chain_table
        self.checkpoints_table = recorder.checkpoints_table

    # -- reading the store -------------------------------------------------------------

    def _record_param(self, record: str) -> str:
        return self.dialect.uuid(record)

    def _events_page(self, after: tuple[Any, Any] | None, records: Sequence[str] | None) -> list[dict[str, Any]]:
        """A page of stored events in (record, version) order with their chain rows (or NULLs)."""
        where, params = [], []
        if after is not None:
            where.append("(e.originator_id, e.originator_version) > (?, ?)")
            params += [after[0], after[1]]
        if records is not None:
            where.append(f"e.originator_id IN ({', '.join('?' * len(records))})")
            params += [self._record_param(r) for r in records]
        rows = self.db.query(
            f"SELECT e.{self.nid} AS notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            f"c.record_id AS c_record, c.version AS c_version, c.hash AS c_hash "
            f"FROM {self.events} e LEFT JOIN {self.chain} c ON c.notification_id = e.{self.nid} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY e.originator_id, e.originator_version LIMIT ?",
            [*params, PAGE],
        )
        return [dict(row) | {"record": _record_of(row["originator_id"])} for row in rows]

    def stored_events(self, records: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        for chunk in chunks(records):
            after = None
            while True:
                page = self._events_page(after, chunk)
                yield from page
                if len(page) < PAGE:
                    break
                after = (page[-1]["originator_id"], page[-1]["originator_version"])  # as stored, edited or not

    def count_events(self, records: Sequence[str] | None = None) -> int:
        total = 0
        for chunk in chunks(records):
            where = f"WHERE originator_id IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            params = [self._record_param(r) for r in chunk] if chunk is not None else []
            total += self.db.query(f"SELECT COUNT(*) AS n FROM {self.events} {where}", params)[0]["n"]
        return total

    def _count_after(self, position: int, records: Sequence[str] | None) -> int:
        """How many of the events (of the records) are after a log position: not yet sealed."""
        total = 0
        for chunk in chunks(records):
            where = f"AND record_id IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            total += self.db.query(
                f"SELECT COUNT(*) AS n FROM {self.chain} WHERE notification_id > ? {where}", [position, *(chunk or [])]
            )[0]["n"]
        return total

    def heads_at(self, position: int) -> list[tuple[str, int, str]]:
        """(record, version, hash) of every chain's last event at or before a log position, by record."""
        rows = self.db.query(
            f"SELECT c.record_id, c.version, c.hash FROM {self.chain} c JOIN ("
            f"SELECT record_id, MAX(version) AS version FROM {self.chain} WHERE notification_id <= ? GROUP BY record_id"
            ") h ON h.record_id = c.record_id AND h.version = c.version ORDER BY c.record_id",
            [position],
        )
        return [(r["record_id"], r["version"], r["hash"]) for r in rows]

    # -- checkpoints -------------------------------------------------------------------

    def checkpoints(self, latest_only: bool = False) -> list[Checkpoint]:
        """Every checkpoint in sequence order (or only the latest)."""
        rows = self.db.query(
            f"SELECT * FROM {self.checkpoints_table} ORDER BY seq" if not latest_only
            else f"SELECT * FROM {self.checkpoints_table} ORDER BY seq DESC LIMIT 1"
        )
        return [Checkpoint(**{k: row[k] for k in Checkpoint.__dataclass_fields__}) for row in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        found = self.checkpoints(latest_only=True)
        return found[0] if found else None

    def checkpoint(self) -> Checkpoint:
        """Seal the heads of all chains at the current log position (again if nothing was written since)."""
        rows = self.db.query(f"SELECT MAX(notification_id) AS position FROM {self.chain}")
        position = rows[0]["position"] or 0
        heads = self.heads_at(position)
        merkle = merkle_root([leaf(*head) for head in heads])
        previous = self.latest_checkpoint()
        seq = previous.seq + 1 if previous else 1
        prior = previous.root if previous else GENESIS
        root = Checkpoint.seal(seq, position, len(heads), merkle, prior)
        created = Checkpoint(seq, position, len(heads), merkle, prior, root, datetime.now(UTC).isoformat())
        self.db.execute(
            f"INSERT INTO {self.checkpoints_table} (seq, position, heads, merkle, previous, root, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [created.seq, created.position, created.heads, created.merkle, created.previous, created.root, created.created_at],
        )
        return created

    # -- a store from before the chain -------------------------------------------------

    def backfill(self) -> int:
        """Chain every stored event without a hash (a store from before chains existed); how many."""
        record, head = None, GENESIS
        rows: list[list[Any]] = []
        count = 0
        for row in self.stored_events():  # in (record, version) order: one chain at a time
            if row["record"] != record:
                record, head = row["record"], GENESIS
            if row["c_hash"] is None:
                head = event_hash(head, row["record"], row["originator_version"], row["topic"], bytes(row["state"]))
                rows.append([row["notification_id"], record, row["originator_version"], head])
                count += 1
            else:
                head = row["c_hash"]
            if len(rows) >= PAGE:
                self._insert_chain(rows)
                rows = []
        self._insert_chain(rows)
        return count

    def _insert_chain(self, rows: list[list[Any]]) -> None:
        if rows:
            self.db.execute_many(
                f"INSERT INTO {self.chain} (notification_id, record_id, version, hash) VALUES (?, ?, ?, ?)", rows
            )


UNREADABLE_ID = "(not a record id"  # how a stored id an edit made unreadable is named


def _record_of(value: Any) -> str:
    """A stored originator id as a record id; an edit that made it something else is kept visible."""
    try:
        return str(UUID(value.hex() if isinstance(value, (bytes, memoryview)) else str(value)))
    except (ValueError, TypeError, AttributeError):
        return f"{UNREADABLE_ID}: {type(value).__name__})"


def chunks(records: Sequence[str] | None, size: int = 500) -> Iterator[list[str] | None]:
    if records is None:
        yield None
        return
    items = list(records)
    for start in range(0, len(items), size):
        yield items[start : start + size]
