"""The journey view: stages, stage history and touchpoints of every customer.

One set of SQL serves SQLite and PostgreSQL; each dialect class only says how
to name tables and mark parameters. The view is an eventsourcing
TrackingRecorder, so every write stores the position it reached in the same
transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from journeys.playbook import Journey
from journeys.stages import Position, Stages, Transition

JOURNEYS = tuple(Journey)
STAGE_COLUMNS = [f"{j.value}_{c}" for j in JOURNEYS for c in ("stage", "since", "cause_id", "cause_type")]
CUSTOMER_COLUMNS = [
    "record_id", *STAGE_COLUMNS, "first_seen", "last_occurred_at", "last_touchpoint_id", "touchpoint_count",
    "sealed_key",
]
# Personal data only sealed: `sealed` holds the touchpoint's customer key, actor and properties.
TOUCHPOINT_COLUMNS = [
    "record_id", "touchpoint_id", "type", "channel", "occurred_at", "recorded_at",
    "source", "campaign", "deal_id", "sealed",
]
TRANSITION_COLUMNS = [
    "record_id", "occurred_at", "touchpoint_id", "journey", "from_stage", "to_stage",
    "skipped", "is_restart", "touchpoint_type",
]
CHUNK = 500
INTEGER_COLUMNS = {"touchpoint_count": "integer", "is_restart": "integer"}


def ts(value: datetime | None) -> str | None:
    """Timestamps as fixed-width UTC text, so text order is time order in both dialects."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


OUTBOX_COLUMNS = [
    "record_id", "kind", "journey", "from_stage", "to_stage", "skipped", "is_restart", "occurred_at",
    "touchpoint_id", "touchpoint_type", "awareness_stage",
]


@dataclass(frozen=True)
class CustomerChange:
    """What one batch did to one customer: its new stages and its stage history."""

    record_id: str
    sealed_key: str | None
    stages: Stages
    touchpoint_count: int
    transitions: list[Transition]
    replace_from: datetime | None  # re-derived from this occurred time on; None: only appended
    new_transitions: list[Transition]  # not in the history before: to be published


class JourneyViewSQL:
    """Tables, writes and queries of the journey view, dialect-neutral."""

    param = "?"
    serial_key = "INTEGER PRIMARY KEY AUTOINCREMENT"
    datastore: Any

    def _table(self, name: str) -> str:
        return f"jv_{name}"

    def _ddl(self, statement: str) -> Any:
        return statement

    # Given by the dialect classes below (with eventsourcing's tracking recorders):
    # _tracking_table() -> str, and _insert_tracking(cursor, tracking).
    _tracking_table: Any
    _insert_tracking: Any

    def _view_ddl(self) -> list[Any]:
        customers, touchpoints, transitions = (
            self._table("customers"), self._table("touchpoints"), self._table("transitions")
        )
        stage_cols = ", ".join(f"{c} TEXT" for c in STAGE_COLUMNS)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {customers} (record_id TEXT PRIMARY KEY, {stage_cols}, "
            "first_seen TEXT, last_occurred_at TEXT, last_touchpoint_id TEXT, touchpoint_count INTEGER, "
            "sealed_key TEXT, erased_at TEXT)",
            f"CREATE TABLE IF NOT EXISTS {touchpoints} (record_id TEXT, touchpoint_id TEXT, type TEXT, "
            "channel TEXT, occurred_at TEXT, recorded_at TEXT, source TEXT, campaign TEXT, "
            "deal_id TEXT, sealed TEXT, PRIMARY KEY (record_id, touchpoint_id))",
            f"CREATE TABLE IF NOT EXISTS {transitions} (record_id TEXT, occurred_at TEXT, "
            "touchpoint_id TEXT, journey TEXT, from_stage TEXT, to_stage TEXT, skipped TEXT, "
            "is_restart INTEGER, touchpoint_type TEXT, "
            "PRIMARY KEY (record_id, occurred_at, touchpoint_id, journey))",
            f"CREATE TABLE IF NOT EXISTS {self._table('stage_changes')} (seq {self.serial_key}, "
            "record_id TEXT, kind TEXT, journey TEXT, from_stage TEXT, to_stage TEXT, skipped TEXT, "
            "is_restart INTEGER, occurred_at TEXT, touchpoint_id TEXT, touchpoint_type TEXT, "
            "awareness_stage TEXT)",
            f"CREATE INDEX IF NOT EXISTS jv_touchpoints_occurred ON {touchpoints} "
            "(record_id, occurred_at, touchpoint_id)",
        ]
        statements += [
            f"CREATE INDEX IF NOT EXISTS jv_customers_{j.value} ON {customers} ({j.value}_stage, record_id)"
            for j in JOURNEYS
        ]
        return [self._ddl(s) for s in statements]

    def _before_write(self, c: Any) -> None:
        """A dialect's settings for a writing transaction."""

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.param)

    def _marks(self, n: int) -> str:
        return ", ".join([self.param] * n)

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read-only statement written with '?' parameters."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql(statement), list(params))
            return c.fetchall()

    # For tables kept beside the view in the same database (e.g. the API's keys).
    query = _query

    def table(self, name: str) -> str:
        return self._table(name)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        """One statement written with '?' parameters, in a transaction of its own; rows changed."""
        return self.execute_many(statement, [params])

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        """One statement for each row of parameters, in one transaction; rows changed."""
        changed = 0
        with self.datastore.transaction(commit=True) as c:
            self._before_write(c)
            for params in rows:
                c.execute(self._sql(statement), list(params))
                changed += max(getattr(c, "sqlite_cursor", c).rowcount, 0)
        return changed

    # -- writes -----------------------------------------------------------------

    def load_stages(self, record_ids: Sequence[str]) -> dict[str, tuple[Stages, int]]:
        """Current stages and touchpoint count of the given customers."""
        found: dict[str, tuple[Stages, int]] = {}
        for chunk in _chunks(list(record_ids)):
            marks = ", ".join("?" * len(chunk))
            for row in self._query(f"SELECT * FROM {self._table('customers')} WHERE record_id IN ({marks})", chunk):
                found[row["record_id"]] = (_stages_from_row(row), row["touchpoint_count"])
        return found

    def stages_before(self, record_id: str, at: datetime, playbook_initial: Stages) -> Stages:
        """The record's stages just before `at`: what folding its touchpoints up to then gave.

        Read from the stage history (each journey's last transition before `at`), so a late
        touchpoint re-derives from there instead of from the record's first touchpoint.
        """
        touchpoints, transitions = self._table("touchpoints"), self._table("transitions")
        last = self._query(
            f"SELECT occurred_at, touchpoint_id FROM {touchpoints} WHERE record_id = ? AND occurred_at = "
            f"(SELECT MAX(occurred_at) FROM {touchpoints} WHERE record_id = ? AND occurred_at < ?)",
            [record_id, record_id, ts(at)],
        )
        if not last:
            return playbook_initial  # nothing before `at`: derive from the start
        first = self._query(f"SELECT MIN(occurred_at) AS first FROM {touchpoints} WHERE record_id = ?", [record_id])
        first_seen = parse_ts(first[0]["first"])
        positions = {}
        for journey in JOURNEYS:
            rows = self._query(
                f"SELECT * FROM {transitions} WHERE record_id = ? AND journey = ? AND occurred_at = "
                f"(SELECT MAX(occurred_at) FROM {transitions} WHERE record_id = ? AND journey = ? AND occurred_at < ?)",
                [record_id, journey.value, record_id, journey.value, ts(at)],
            )
            if rows:
                t = _transition_from_row(max(rows, key=lambda r: r["touchpoint_id"]))
                positions[journey] = Position(t["to_stage"], t["at"], t["touchpoint_id"], t["touchpoint_type"])
            else:
                initial = playbook_initial[journey].stage
                positions[journey] = Position(initial, first_seen if initial is not None else None)
        last_key = (parse_ts(last[0]["occurred_at"]), max(r["touchpoint_id"] for r in last))
        return Stages(positions, first_seen, last_key)

    def touchpoints_from(self, record_id: str, at: datetime) -> list[dict[str, Any]]:
        """What the derivation reads of the record's touchpoints that occurred at or after `at`."""
        return self._query(
            f"SELECT touchpoint_id, type, occurred_at FROM {self._table('touchpoints')} "
            "WHERE record_id = ? AND occurred_at >= ?",
            [record_id, ts(at)],
        )

    def touchpoints_of(self, record_id: str) -> list[dict[str, Any]]:
        """A customer's touchpoints in occurred order."""
        rows = self._query(
            f"SELECT * FROM {self._table('touchpoints')} WHERE record_id = ? "
            "ORDER BY occurred_at, touchpoint_id",
            [record_id],
        )
        return [_touchpoint_from_row(row) for row in rows]

    def write(
        self,
        touchpoints: Sequence[dict[str, Any]],
        changes: Iterable[CustomerChange],
        tracking: Tracking,
        erasures: Sequence[tuple[str, datetime]] = (),
        publish_erasures: bool = True,
    ) -> None:
        """Store one processed batch and the position it reached, atomically."""
        changes = list(changes)
        with self.datastore.transaction(commit=True) as c:
            self._before_write(c)
            # Tracking first: a concurrent runner that got here first makes this fail.
            self._insert_tracking(c, tracking)
            self._insert(
                c, "touchpoints", TOUCHPOINT_COLUMNS, [_touchpoint_row(t) for t in touchpoints],
                "ON CONFLICT (record_id, touchpoint_id) DO NOTHING",
            )
            for ch in changes:
                if ch.replace_from is not None:
                    c.execute(
                        self._sql(f"DELETE FROM {self._table('transitions')} WHERE record_id = ? AND occurred_at >= ?"),
                        [ch.record_id, ts(ch.replace_from)],
                    )
            rows = [_transition_row(ch.record_id, t) for ch in changes for t in ch.transitions]
            self._insert(c, "transitions", TRANSITION_COLUMNS, rows)
            outbox = [
                [ch.record_id, *_outbox_row(t, ch.stages)]
                for ch in changes
                for t in ch.new_transitions
            ]
            self._insert(c, "stage_changes", OUTBOX_COLUMNS, outbox)
            updates = ", ".join(f"{col} = excluded.{col}" for col in CUSTOMER_COLUMNS[1:-1])
            self._insert(
                c, "customers", CUSTOMER_COLUMNS, [_customer_row(ch) for ch in changes],
                f"ON CONFLICT (record_id) DO UPDATE SET {updates}, "
                f"sealed_key = COALESCE(excluded.sealed_key, jv_customers.sealed_key)",
            )
            self._erase(c, erasures, publish_erasures)

    def _erase(self, c: Any, erasures: Sequence[tuple[str, datetime]], publish: bool) -> None:
        """Blank what personal data (sealed) the view holds of erased records; keep their stages."""
        for record_id, at in erasures:
            c.execute(
                self._sql(f"UPDATE {self._table('customers')} SET sealed_key = NULL, erased_at = ? WHERE record_id = ?"),
                [ts(at), record_id],
            )
            c.execute(self._sql(f"UPDATE {self._table('touchpoints')} SET sealed = NULL WHERE record_id = ?"), [record_id])
            if publish:
                c.execute(
                    self._sql(f"INSERT INTO {self._table('stage_changes')} (record_id, kind, occurred_at) VALUES (?, ?, ?)"),
                    [record_id, "erased", ts(at)],
                )

    def _insert(
        self, c: Any, table: str, columns: list[str], rows: list[list[Any]], conflict: str = ""
    ) -> None:
        """Multi-row INSERTs: far fewer round trips than one statement per row."""
        for chunk in _chunks(rows):
            values = ", ".join([f"({self._marks(len(columns))})"] * len(chunk))
            c.execute(
                f"INSERT INTO {self._table(table)} ({', '.join(columns)}) VALUES {values} {conflict}",
                [value for row in chunk for value in row],
            )

    def stage_changes_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """The outbox of stage transitions, in the order they were derived."""
        rows = self._query(
            f"SELECT * FROM {self._table('stage_changes')} WHERE seq > ? ORDER BY seq LIMIT ?", [seq, limit]
        )
        return [
            {**(_transition_from_row(row) if row["kind"] != "erased" else {"at": parse_ts(row["occurred_at"])}),
             "seq": row["seq"], "record_id": row["record_id"], "kind": row["kind"],
             "awareness_stage": row["awareness_stage"]}
            for row in rows
        ]

    def reset(self, application_name: str) -> None:
        """Forget the stages and history (not the outbox), to rebuild them from the events."""
        with self.datastore.transaction(commit=True) as c:
            for name in ("customers", "touchpoints", "transitions"):
                c.execute(f"DELETE FROM {self._table(name)}")
            c.execute(
                self._sql(f"DELETE FROM {self._tracking_table()} WHERE application_name = ?"),
                [application_name],
            )

    # -- queries ----------------------------------------------------------------

    def customer(self, record_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT * FROM {self._table('customers')} WHERE record_id = ?", [record_id])
        return _customer_from_row(rows[0]) if rows else None

    def sent_messages(self, record_id: str) -> list[dict[str, Any]]:
        """The record's message_sent touchpoints (their message ids are in the sealed properties)."""
        rows = self._query(
            f"SELECT touchpoint_id, sealed FROM {self._table('touchpoints')} "
            "WHERE record_id = ? AND type = 'message_sent'",
            [record_id],
        )
        return [dict(touchpoint_id=row["touchpoint_id"], sealed=row["sealed"]) for row in rows]

    def transitions_of(self, record_id: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """A record's stage history in occurred order (from `since` on, if given)."""
        rows = self._query(
            f"SELECT * FROM {self._table('transitions')} WHERE record_id = ? AND occurred_at >= ? "
            "ORDER BY occurred_at, touchpoint_id",
            [record_id, ts(since) or ""],
        )
        order = {j.value: i for i, j in enumerate(JOURNEYS)}
        found = [_transition_from_row(row) for row in rows]
        return sorted(found, key=lambda t: (t["at"], t["touchpoint_id"], order[t["journey"]]))

    def segment(
        self, filters: dict[Journey, str | None], after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Customers in the given stages (None: journey not started), in key order."""
        where, params = [], []
        for journey, stage in filters.items():
            if stage is None:
                where.append(f"{journey.value}_stage IS NULL")
            else:
                where.append(f"{journey.value}_stage = ?")
                params.append(stage)
        where.append("erased_at IS NULL")
        if after is not None:
            where.append("record_id > ?")
            params.append(after)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._query(
            f"SELECT * FROM {self._table('customers')} {clause}ORDER BY record_id LIMIT ?",
            [*params, limit],
        )
        return [_customer_from_row(row) for row in rows]

    def summary(self) -> dict[Journey, dict[str | None, int]]:
        counts: dict[Journey, dict[str | None, int]] = {}
        for journey in JOURNEYS:
            column = f"{journey.value}_stage"
            rows = self._query(
                f"SELECT {column} AS stage, COUNT(*) AS n FROM {self._table('customers')} GROUP BY {column}"
            )
            counts[journey] = {row["stage"]: row["n"] for row in rows}
        return counts


class SQLiteJourneyView(JourneyViewSQL, SQLiteTrackingRecorder):
    param = "?"

    def _before_write(self, c: Any) -> None:
        c.execute("PRAGMA secure_delete = ON")  # what a write frees is zeroed, not left in the file

    def purge_freed(self, table: str) -> None:
        """Copy the WAL into the database and truncate it: no old page versions are left behind."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + self._view_ddl()

    def _tracking_table(self) -> str:
        return "tracking"


class PostgresJourneyView(JourneyViewSQL, PostgresTrackingRecorder):
    param = "%s"
    serial_key = "BIGSERIAL PRIMARY KEY"

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(self._view_ddl())

    def _table(self, name: str) -> str:
        return f'"{self.datastore.schema}".jv_{name}'

    def _ddl(self, statement: str) -> Any:
        return SQL(statement)  # type: ignore[arg-type]

    def _tracking_table(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'

    def purge_freed(self, table: str) -> None:
        """VACUUM: the dead row versions an UPDATE left behind are removed."""
        with self.datastore.get_connection() as conn:
            conn.execute(f"VACUUM {table}")

    def _insert(
        self, c: Any, table: str, columns: list[str], rows: list[list[Any]], conflict: str = ""
    ) -> None:
        """One INSERT from column arrays: a constant statement, however many rows."""
        if not rows:
            return
        arrays = ", ".join(f"%s::{INTEGER_COLUMNS.get(col, 'text')}[]" for col in columns)
        c.execute(
            f"INSERT INTO {self._table(table)} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}) {conflict}",
            [list(column) for column in zip(*rows, strict=True)],
        )


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _stages_from_row(row: Any) -> Stages:
    positions = {
        j: Position(
            stage=row[f"{j.value}_stage"],
            since=parse_ts(row[f"{j.value}_since"]),
            touchpoint_id=row[f"{j.value}_cause_id"],
            touchpoint_type=row[f"{j.value}_cause_type"],
        )
        for j in JOURNEYS
    }
    last = parse_ts(row["last_occurred_at"])
    last_key = None if last is None else (last, row["last_touchpoint_id"])
    return Stages(positions, parse_ts(row["first_seen"]), last_key)


def _customer_row(change: CustomerChange) -> list[Any]:
    return _stages_row(change) + [change.sealed_key]


def _stages_row(change: CustomerChange) -> list[Any]:
    stages = change.stages
    row: list[Any] = [change.record_id]
    for j in JOURNEYS:
        p = stages[j]
        row += [p.stage, ts(p.since), p.touchpoint_id, p.touchpoint_type]
    last_at, last_id = stages.last_key or (None, None)
    return row + [ts(stages.first_seen), ts(last_at), last_id, change.touchpoint_count]


def _customer_from_row(row: Any) -> dict[str, Any]:
    stages = _stages_from_row(row)
    return {
        "record_id": row["record_id"],
        "stages": stages,
        "touchpoint_count": row["touchpoint_count"],
        "sealed_key": row["sealed_key"],
        "erased_at": parse_ts(row["erased_at"]),
    }


def _touchpoint_row(t: dict[str, Any]) -> list[Any]:
    return [
        t["record_id"], t["touchpoint_id"], t["type"], t["channel"], ts(t["occurred_at"]),
        ts(t["recorded_at"]), t["source"], t["campaign"], t["deal_id"], t["sealed"],
    ]


def _touchpoint_from_row(row: Any) -> dict[str, Any]:
    found = {col: row[col] for col in TOUCHPOINT_COLUMNS}
    found["occurred_at"] = parse_ts(found["occurred_at"])
    found["recorded_at"] = parse_ts(found["recorded_at"])
    return found


def _transition_row(record_id: str, t: Transition) -> list[Any]:
    return [
        record_id, ts(t.at), t.touchpoint_id, t.journey.value, t.from_stage, t.to_stage,
        json.dumps(list(t.skipped)), int(t.restart), t.touchpoint_type,
    ]


def _outbox_row(t: Transition, stages: Stages) -> list[Any]:
    return [
        "stage", t.journey.value, t.from_stage, t.to_stage, json.dumps(list(t.skipped)), int(t.restart),
        ts(t.at), t.touchpoint_id, t.touchpoint_type, stages[Journey.awareness].stage,
    ]


def _transition_from_row(row: Any) -> dict[str, Any]:
    return {
        "journey": row["journey"],
        "from_stage": row["from_stage"],
        "to_stage": row["to_stage"],
        "skipped": json.loads(row["skipped"]),
        "restart": bool(row["is_restart"]),
        "at": parse_ts(row["occurred_at"]),
        "touchpoint_id": row["touchpoint_id"],
        "touchpoint_type": row["touchpoint_type"],
    }
