"""The journey view: every instance's stages and stage history, and every touchpoint.

An instance ("subject") is a customer record, an account, a deal or a case: the
scope of the journeys kept for it. Positions are one row per journey and
subject, so a playbook may declare any journeys; segments are index range scans
on (journey, stage, subject).

One set of SQL serves SQLite and PostgreSQL; each dialect class only says how
to name tables and mark parameters. The view is an eventsourcing
TrackingRecorder, so every write stores the position it reached in the same
transaction.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from journeys.playbook import Journey, Playbook, Scope
from journeys.stages import Criterion, Position, Stages, Transition, initial_stages

# Personal data only sealed: `sealed` holds the touchpoint's customer key, actor and properties.
TOUCHPOINT_COLUMNS = [
    "record_id", "touchpoint_id", "type", "channel", "occurred_at", "recorded_at", "source", "campaign",
    "deal_id", "account_id", "case_id", "buying_role", "criteria", "sealed", "customer",
]
SUBJECT_COLUMNS = ["scope", "subject", "first_seen", "last_occurred_at", "last_touchpoint_id", "touchpoint_count"]
POSITION_COLUMNS = [
    "scope", "subject", "journey", "stage", "since", "cause_id", "cause_type", "met", "defects", "playbook",
]
TRANSITION_COLUMNS = [
    "scope", "subject", "journey", "occurred_at", "touchpoint_id", "from_stage", "to_stage", "skipped",
    "is_restart", "touchpoint_type", "defects", "record_id", "playbook", "from_since", "stay_seconds",
]
REVISION_COLUMNS = [
    "scope", "subject", "recorded_at", "kind", "reason", "cause_touchpoint_id", "cause_record_id", "playbook",
    "before", "after", "removed", "added",
]
# The read models one generation holds: a rebuild derives a new generation beside the live one.
# The outbox, the revisions and the registries are kept across generations.
GENERATIONAL = ("customers", "subjects", "positions", "touchpoints", "transitions", "counts", "identities")
OUTBOX_COLUMNS = [
    "scope", "subject", "kind", "journey", "from_stage", "to_stage", "skipped", "is_restart", "occurred_at",
    "touchpoint_id", "touchpoint_type", "awareness_stage", "defects",
]
# Which touchpoint column names the instance of each scope.
# A touchpoint's customer is its record's, or, when the record is linked to others (identity
# stitching), the root record of the linked ones: the customer whose stages it moves.
SUBJECT_COLUMN = {Scope.customer: "customer", Scope.account: "account_id", Scope.deal: "deal_id", Scope.case: "case_id"}
CHUNK = 500
# Columns that are not text, with their PostgreSQL types.
COLUMN_TYPES = {
    "touchpoint_count": "integer", "is_restart": "integer", "instances": "bigint", "stay_seconds": "double precision",
}


def ts(value: datetime | None) -> str | None:
    """Timestamps as fixed-width UTC text, so text order is time order in both dialects."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class GenerationChanged(Exception):
    """The live generation of the read models changed under a writer: follow it and try again."""


class NotCaughtUp(Exception):
    """A rebuilt generation is behind the live one: catch it up to this position first."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Revision:
    """A change to what an instance's past looked like: stages before and after, transitions
    removed and added, and why (a late touchpoint, or a new playbook)."""

    kind: str
    reason: str
    recorded_at: datetime
    cause_touchpoint_id: str | None
    cause_record_id: str | None
    before: dict[str, str | None]
    after: dict[str, str | None]
    removed: list[dict[str, Any]]
    added: list[dict[str, Any]]


@dataclass(frozen=True)
class SubjectChange:
    """What one batch did to one instance: its new stages and its stage history."""

    scope: Scope
    subject: str
    stages: Stages
    touchpoint_count: int
    transitions: list[Transition]  # with the record (contact) whose touchpoint caused each
    causes: dict[str, str | None]  # touchpoint id -> record id, for the transitions (None: not a contact's)
    replace_from: datetime | None  # re-derived from this occurred time on; None: only appended
    new_transitions: list[Transition]  # not in the history before: to be published
    changed: tuple[str, ...]  # the journeys whose position (or criteria, defects) differ from the stored
    revision: Revision | None = None  # what re-deriving the past changed in it
    before: Stages | None = None  # its stages before the batch (None: a new instance)


@dataclass
class IdentityChange:
    """What a link or an unlink does to the view (see StageProjection)."""

    linked: tuple[str, str, str] | None = None  # (record, linked to, root) to insert
    unlinked: str | None = None  # the record whose link goes
    roots: dict[str, str] = field(default_factory=dict)  # record -> its new root, for the records that move
    removed: list[tuple[str, Stages]] = field(default_factory=list)  # customer subjects that are no more


class JourneyViewSQL:
    """Tables, writes and queries of the journey view, dialect-neutral."""

    param = "?"
    serial_key = "INTEGER PRIMARY KEY AUTOINCREMENT"
    datastore: Any
    playbook: Playbook  # set by the composition root: which journeys each scope has
    generation = 1  # which generation of the read models this view reads and writes
    building = False  # True for a generation a rebuild is deriving (not live yet)

    def _name(self, name: str, generation: int | None = None) -> str:
        """A table's (or index's) name: generational tables carry their generation (1: none)."""
        g = self.generation if generation is None else generation
        return f"jv{g}_{name}" if name.split("_")[0] in GENERATIONAL and g != 1 else f"jv_{name}"

    def _table(self, name: str, generation: int | None = None) -> str:
        return self._name(name, generation)

    def tracking_name(self, application_name: str) -> str:
        """The name this generation records its position under."""
        return application_name if self.generation == 1 else f"{application_name}@g{self.generation}"

    def _ddl(self, statement: str) -> Any:
        return statement

    # Given by the dialect classes below (with eventsourcing's tracking recorders they extend).
    _tracking_table: Callable[[], str]
    _insert_tracking: Callable[[Any, Tracking], None]
    insert_tracking: Callable[[Tracking], None]
    max_tracking_id: Callable[[str], int | None]
    _max_tracking_id: Callable[[str, Any], int | None]
    purge_freed: Callable[[str], None]
    _columns: Callable[[str], set[str]]  # a table's column names, from the catalogue

    def _view_ddl(self) -> list[Any]:
        """The tables kept across generations (`open` creates the live generation's)."""
        t = self._table
        statements = [
            f"CREATE TABLE IF NOT EXISTS {t('stage_changes')} (seq {self.serial_key}, scope TEXT, subject TEXT, "
            "kind TEXT, journey TEXT, from_stage TEXT, to_stage TEXT, skipped TEXT, is_restart INTEGER, "
            "occurred_at TEXT, touchpoint_id TEXT, touchpoint_type TEXT, awareness_stage TEXT, defects TEXT)",
            f"CREATE TABLE IF NOT EXISTS {t('revisions')} (seq {self.serial_key}, scope TEXT, subject TEXT, "
            "recorded_at TEXT, kind TEXT, reason TEXT, cause_touchpoint_id TEXT, cause_record_id TEXT, "
            "playbook TEXT, before TEXT, after TEXT, removed TEXT, added TEXT)",
            f"CREATE INDEX IF NOT EXISTS jv_revisions_subject ON {t('revisions')} (scope, subject, seq)",
            f"CREATE TABLE IF NOT EXISTS {t('playbooks')} (fingerprint TEXT PRIMARY KEY, version INTEGER UNIQUE, "
            "name TEXT, registered_at TEXT, body TEXT)",
            f"CREATE TABLE IF NOT EXISTS {t('generations')} (generation INTEGER PRIMARY KEY, playbook TEXT, "
            "state TEXT, started_at TEXT, live_at TEXT, retired_at TEXT)",
            # What marketing spent on each campaign in a period: input, not derived, so kept across generations.
            f"CREATE TABLE IF NOT EXISTS {t('spend')} (seq {self.serial_key}, campaign TEXT, period_start TEXT, "
            "period_end TEXT, amount TEXT, currency TEXT, recorded_at TEXT, recorded_by TEXT)",
            f"CREATE INDEX IF NOT EXISTS jv_spend_campaign ON {t('spend')} (campaign, period_start)",
        ]
        return [self._ddl(s) for s in statements]

    def _generation_ddl(self, generation: int) -> list[str]:
        """The read models of one generation: tables and indexes named for it."""
        def t(name: str) -> str:
            return self._table(name, generation)

        def i(name: str) -> str:
            return self._name(name, generation)

        statements = [
            f"CREATE TABLE IF NOT EXISTS {t('customers')} (record_id TEXT PRIMARY KEY, sealed_key TEXT, erased_at TEXT)",
            f"CREATE TABLE IF NOT EXISTS {t('subjects')} (scope TEXT, subject TEXT, first_seen TEXT, "
            "last_occurred_at TEXT, last_touchpoint_id TEXT, touchpoint_count INTEGER, PRIMARY KEY (scope, subject))",
            f"CREATE TABLE IF NOT EXISTS {t('positions')} (scope TEXT, subject TEXT, journey TEXT, stage TEXT, "
            "since TEXT, cause_id TEXT, cause_type TEXT, met TEXT, defects TEXT, playbook TEXT, "
            "PRIMARY KEY (journey, subject))",
            f"CREATE TABLE IF NOT EXISTS {t('touchpoints')} (record_id TEXT, touchpoint_id TEXT, type TEXT, "
            "channel TEXT, occurred_at TEXT, recorded_at TEXT, source TEXT, campaign TEXT, deal_id TEXT, "
            "account_id TEXT, case_id TEXT, buying_role TEXT, criteria TEXT, sealed TEXT, customer TEXT, "
            "PRIMARY KEY (record_id, touchpoint_id))",
            # Identity links: a record linked to another, and the root of its linked records.
            f"CREATE TABLE IF NOT EXISTS {t('identities')} (record_id TEXT PRIMARY KEY, linked_to TEXT, root TEXT)",
            f"CREATE INDEX IF NOT EXISTS {i('identities_root')} ON {t('identities')} (root)",
            f"CREATE INDEX IF NOT EXISTS {i('identities_linked')} ON {t('identities')} (linked_to)",
            f"CREATE TABLE IF NOT EXISTS {t('transitions')} (scope TEXT, subject TEXT, journey TEXT, "
            "occurred_at TEXT, touchpoint_id TEXT, from_stage TEXT, to_stage TEXT, skipped TEXT, "
            "is_restart INTEGER, touchpoint_type TEXT, defects TEXT, record_id TEXT, playbook TEXT, "
            "from_since TEXT, stay_seconds DOUBLE PRECISION, "
            "PRIMARY KEY (scope, subject, occurred_at, touchpoint_id, journey))",
            # How many instances of a scope are in each combination of stages (and process
            # defects) of its journeys: stage counts and the alignment matrix without a scan.
            f"CREATE TABLE IF NOT EXISTS {t('counts')} (scope TEXT, combination TEXT, instances BIGINT, "
            "PRIMARY KEY (scope, combination))",
            f"CREATE INDEX IF NOT EXISTS {i('positions_stage')} ON {t('positions')} (journey, stage, subject)",
        ]
        statements += [
            f"CREATE INDEX IF NOT EXISTS {i('touchpoints_' + column)} ON {t('touchpoints')} ({column}, occurred_at)"
            for column in ("deal_id", "account_id", "case_id")
        ]
        return statements

    def _analytics_ddl(self, generation: int) -> list[str]:
        """Indexes the marketing analytics read: stays by the stage left and when it was entered,
        advances by the stage entered and when, current stays by when they began; and a
        customer's touchpoints (of all its linked records) in occurred order."""
        t, i = (lambda n: self._table(n, generation)), (lambda n: self._name(n, generation))
        return [
            f"CREATE INDEX IF NOT EXISTS {i('touchpoints_customer')} ON {t('touchpoints')} "
            "(customer, occurred_at, touchpoint_id)",
            # Covering: a funnel counts outcomes and sorts durations from the index alone.
            f"CREATE INDEX IF NOT EXISTS {i('transitions_stays')} ON {t('transitions')} "
            "(journey, from_stage, from_since, stay_seconds, is_restart, to_stage, skipped)",
            f"CREATE INDEX IF NOT EXISTS {i('transitions_entries')} ON {t('transitions')} "
            "(journey, to_stage, occurred_at, from_stage, is_restart, skipped)",
            f"CREATE INDEX IF NOT EXISTS {i('positions_since')} ON {t('positions')} (journey, stage, since)",
        ]

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

    # -- the projection's reads ----------------------------------------------------------

    def load_states(self, scope: Scope, subjects: Sequence[str]) -> dict[str, tuple[Stages, int]]:
        """Current stages and touchpoint count of the given instances of a scope."""
        found: dict[str, tuple[Stages, int]] = {}
        for chunk in _chunks(list(subjects)):
            marks = ", ".join("?" * len(chunk))
            rows = self._query(
                f"SELECT * FROM {self._table('subjects')} WHERE scope = ? AND subject IN ({marks})", [scope.value, *chunk]
            )
            positions = self._positions([r["subject"] for r in rows], scope)
            for row in rows:
                stages = self._stages(scope, positions.get(row["subject"], []), row)
                found[row["subject"]] = (stages, row["touchpoint_count"])
        return found

    def _positions(self, subjects: list[str], scope: Scope) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        journeys = self.playbook.journeys_of(scope)  # (journey, subject) is the key: its index serves this
        for chunk in _chunks(subjects):
            rows = self._query(
                f"SELECT * FROM {self._table('positions')} WHERE journey IN ({', '.join('?' * len(journeys))}) "
                f"AND subject IN ({', '.join('?' * len(chunk))})",
                [*journeys, *chunk],
            )
            for row in rows:
                found.setdefault(row["subject"], []).append(row)
        return found

    def _initial(self, scope: Scope) -> Stages:
        """A scope's initial stages, made once per playbook (never mutated: folds copy)."""
        cache = self.__dict__.setdefault("_initial_stages", {})
        key = (id(self.playbook), scope)
        if key not in cache:
            cache[key] = initial_stages(self.playbook, scope)
        return cache[key]

    def _stages(self, scope: Scope, positions: list[Any], subject_row: Any | None) -> Stages:
        placed = dict(self._initial(scope).positions)
        met, defects = {}, {}
        for row in positions:
            journey = row["journey"]
            if journey not in placed:
                continue  # a journey the playbook no longer has
            placed[journey] = _position(row)
            if row["met"]:
                met[journey] = tuple(Criterion(n, datetime.fromisoformat(s), t) for n, s, t in json.loads(row["met"]))
            if row["defects"]:
                defects[journey] = tuple(json.loads(row["defects"]))
        if subject_row is None:
            return Stages(placed, met=met, defects=defects)
        last = parse_ts(subject_row["last_occurred_at"])
        last_key = None if last is None else (last, subject_row["last_touchpoint_id"])
        return Stages(placed, parse_ts(subject_row["first_seen"]), last_key, met, defects)

    def stages_before(self, scope: Scope, subject: str, at: datetime) -> Stages:
        """The instance's stages just before `at`: what folding its touchpoints up to then gave.

        Read from the stage history (each journey's last transition before `at`, and the
        criteria and defects since its last restart), so a late touchpoint re-derives from
        there instead of from the instance's first touchpoint.
        """
        column, touchpoints = SUBJECT_COLUMN[scope], self._table("touchpoints")
        last = self._query(
            f"SELECT occurred_at, touchpoint_id FROM {touchpoints} WHERE {column} = ? AND occurred_at = "
            f"(SELECT MAX(occurred_at) FROM {touchpoints} WHERE {column} = ? AND occurred_at < ?)",
            [subject, subject, ts(at)],
        )
        initial = self._initial(scope)
        if not last:
            return initial  # nothing before `at`: derive from the start
        first = self._query(f"SELECT MIN(occurred_at) AS first FROM {touchpoints} WHERE {column} = ?", [subject])
        first_seen = parse_ts(first[0]["first"])
        positions, met, defects = {}, {}, {}
        for journey in initial.positions:
            history = self._since_last_restart(scope, subject, journey, at)
            if history:
                t = history[-1]
                positions[journey] = Position(t["to_stage"], t["at"], t["touchpoint_id"], t["touchpoint_type"])
                flagged = tuple(d for x in history for d in x["defects"])  # a new cycle may begin with some
                if flagged:
                    defects[journey] = flagged
            else:
                stage = initial[journey].stage
                positions[journey] = Position(stage, first_seen if stage is not None else None)
            if self.playbook.journeys[journey].qualification:
                since = (history[0]["at"], history[0]["touchpoint_id"]) if history and history[0]["restart"] else None
                confirmed = self._criteria_between(scope, subject, since, at)
                if confirmed:
                    met[journey] = confirmed
        last_key = (datetime.fromisoformat(last[0]["occurred_at"]), max(r["touchpoint_id"] for r in last))
        return Stages(positions, first_seen, last_key, met, defects)

    def _since_last_restart(self, scope: Scope, subject: str, journey: str, at: datetime) -> list[dict[str, Any]]:
        """A journey's transitions before `at`, from its last restart on, in occurred order."""
        transitions = self._table("transitions")
        rows = self._query(
            f"SELECT * FROM {transitions} WHERE scope = ? AND subject = ? AND journey = ? AND occurred_at < ? "
            f"AND occurred_at >= COALESCE((SELECT MAX(occurred_at) FROM {transitions} WHERE scope = ? AND subject = ? "
            "AND journey = ? AND is_restart = 1 AND occurred_at < ?), '')",
            [scope.value, subject, journey, ts(at), scope.value, subject, journey, ts(at)],
        )
        found = sorted((_transition_from_row(r) for r in rows), key=lambda t: (t["at"], t["touchpoint_id"]))
        restarts = [i for i, t in enumerate(found) if t["restart"]]
        return found[restarts[-1]:] if restarts else found

    def _criteria_between(
        self, scope: Scope, subject: str, after: tuple[datetime, str] | None, before: datetime
    ) -> tuple[Criterion, ...]:
        """The criteria first confirmed after `after` (a restart) and before `before`, in order."""
        rows = self._query(
            f"SELECT touchpoint_id, occurred_at, criteria FROM {self._table('touchpoints')} "
            f"WHERE {SUBJECT_COLUMN[scope]} = ? AND criteria IS NOT NULL AND occurred_at >= ? AND occurred_at < ?",
            [subject, ts(after[0]) if after else "", ts(before)],
        )
        confirmations = sorted(
            (parse_ts(r["occurred_at"]), r["touchpoint_id"], json.loads(r["criteria"])) for r in rows
        )
        met: dict[str, Criterion] = {}
        for occurred_at, touchpoint_id, names in confirmations:
            if after is not None and (occurred_at, touchpoint_id) <= after:
                continue
            for name in names:
                met.setdefault(name, Criterion(name, occurred_at, touchpoint_id))  # type: ignore[arg-type]  # rows have times
        return tuple(met.values())

    def touchpoints_from(self, scope: Scope, subject: str, at: datetime) -> list[dict[str, Any]]:
        """What the derivation reads of an instance's touchpoints that occurred at or after `at`."""
        rows = self._query(
            f"SELECT touchpoint_id, type, occurred_at, criteria, record_id FROM {self._table('touchpoints')} "
            f"WHERE {SUBJECT_COLUMN[scope]} = ? AND occurred_at >= ?",
            [subject, ts(at)],
        )
        return [{**dict(row), "criteria": json.loads(row["criteria"]) if row["criteria"] else None} for row in rows]

    # -- writes -----------------------------------------------------------------

    def write(
        self,
        touchpoints: Sequence[dict[str, Any]],
        changes: Iterable[SubjectChange],
        tracking: Tracking,
        registered: dict[str, str] | None = None,
        erasures: Sequence[tuple[str, datetime]] = (),
        publish: bool = True,
        identity: IdentityChange | None = None,
    ) -> None:
        """Store one processed batch and the position it reached, atomically."""
        changes = list(changes)
        fingerprint = self.playbook.fingerprint
        with self.datastore.transaction(commit=True) as c:
            self._before_write(c)
            if not self.building:
                self._claim(c)  # a rebuild may have switched generations since this batch was read
            # Tracking first: a concurrent runner that got here first makes this fail.
            self._insert_tracking(c, tracking)
            if identity is not None:
                self._relink(c, identity)
            self._insert(
                c, "touchpoints", TOUCHPOINT_COLUMNS, [_touchpoint_row(t) for t in touchpoints],
                "ON CONFLICT (record_id, touchpoint_id) DO NOTHING",
            )
            self._insert(
                c, "customers", ["record_id", "sealed_key"], [[r, k] for r, k in (registered or {}).items()],
                "ON CONFLICT (record_id) DO NOTHING",
            )
            for ch in changes:
                if ch.replace_from is not None:
                    c.execute(
                        self._sql(
                            f"DELETE FROM {self._table('transitions')} WHERE scope = ? AND subject = ? AND occurred_at >= ?"
                        ),
                        [ch.scope.value, ch.subject, ts(ch.replace_from)],
                    )
            rows = [_transition_row(ch, t, fingerprint) for ch in changes for t in ch.transitions]
            self._insert(c, "transitions", TRANSITION_COLUMNS, rows)
            outbox = [_outbox_row(ch, t) for ch in changes for t in ch.new_transitions] if publish else []
            self._insert(c, "stage_changes", OUTBOX_COLUMNS, outbox)
            self._upsert(c, "subjects", SUBJECT_COLUMNS, [_subject_row(ch) for ch in changes], "scope, subject")
            positions = [_position_row(ch, j, fingerprint) for ch in changes for j in ch.changed]
            self._upsert(c, "positions", POSITION_COLUMNS, positions, "journey, subject")
            self._count(c, self._deltas(changes))
            revisions = [
                revision_row(ch.scope, ch.subject, ch.revision, fingerprint) for ch in changes if ch.revision
            ]
            self._insert(c, "revisions", REVISION_COLUMNS, revisions)
            self._erase(c, erasures, publish)

    def _relink(self, c: Any, change: IdentityChange) -> None:
        """Apply a link or an unlink: the links, the customer of the touchpoints, and the
        customer subjects that are no more (their stages counted out)."""
        identities, touchpoints = self._table("identities"), self._table("touchpoints")
        if change.unlinked is not None:
            c.execute(self._sql(f"DELETE FROM {identities} WHERE record_id = ?"), [change.unlinked])
        if change.linked is not None:
            c.execute(self._sql(f"INSERT INTO {identities} (record_id, linked_to, root) VALUES (?, ?, ?)"), list(change.linked))
        for record_id, root in sorted(change.roots.items()):
            c.execute(self._sql(f"UPDATE {identities} SET root = ? WHERE record_id = ?"), [root, record_id])
            c.execute(self._sql(f"UPDATE {touchpoints} SET customer = ? WHERE record_id = ?"), [root, record_id])
        deltas: dict[tuple[str, str], int] = {}
        for subject, stages in change.removed:
            for table in ("positions", "subjects", "transitions"):
                c.execute(self._sql(f"DELETE FROM {self._table(table)} WHERE scope = ? AND subject = ?"),
                          [Scope.customer.value, subject])
            key = (Scope.customer.value, combination(self.playbook, Scope.customer, _marks_of(stages)))
            deltas[key] = deltas.get(key, 0) - 1
        self._count(c, deltas)

    def roots(self, record_ids: Iterable[str]) -> dict[str, str]:
        """The customer each record's touchpoints belong to: its root if linked, else itself."""
        wanted = sorted(set(record_ids))
        found = {r: r for r in wanted}
        for chunk in _chunks(wanted):
            for row in self._query(
                f"SELECT record_id, root FROM {self._table('identities')} WHERE record_id IN ({self._marks(len(chunk))})",
                chunk,
            ):
                found[row["record_id"]] = row["root"]
        return found

    def any_links(self) -> bool:
        return bool(self._query(f"SELECT 1 FROM {self._table('identities')} LIMIT 1"))

    def linked_to(self, record_id: str) -> str | None:
        rows = self._query(f"SELECT linked_to FROM {self._table('identities')} WHERE record_id = ?", [record_id])
        return rows[0]["linked_to"] if rows else None

    def linked_below(self, record_id: str) -> list[str]:
        """The records linked to this one, directly or through others."""
        found: set[str] = set()
        frontier = [record_id]
        while frontier:
            rows = self._query(
                f"SELECT record_id FROM {self._table('identities')} WHERE linked_to IN ({self._marks(len(frontier))})",
                frontier,
            )
            frontier = [r["record_id"] for r in rows if r["record_id"] not in found]
            found.update(frontier)
        return sorted(found)

    def _deltas(self, changes: list[SubjectChange]) -> dict[tuple[str, str], int]:
        """How the batch moves instances between combinations of stages."""
        deltas: dict[tuple[str, str], int] = {}
        for ch in changes:
            if ch.before is not None and not ch.changed:
                continue
            after = (ch.scope.value, combination(self.playbook, ch.scope, _marks_of(ch.stages)))
            deltas[after] = deltas.get(after, 0) + 1
            if ch.before is not None:
                before = (ch.scope.value, combination(self.playbook, ch.scope, _marks_of(ch.before)))
                deltas[before] = deltas.get(before, 0) - 1
        return deltas

    def _upsert(self, c: Any, table: str, columns: list[str], rows: list[list[Any]], key: str) -> None:
        keys = {k.strip() for k in key.split(",")}
        updates = ", ".join(f"{col} = excluded.{col}" for col in columns if col not in keys)
        self._insert(c, table, columns, rows, f"ON CONFLICT ({key}) DO UPDATE SET {updates}")

    def _erase(self, c: Any, erasures: Sequence[tuple[str, datetime]], publish: bool) -> None:
        """Blank what personal data (sealed) the view holds of erased records; keep their stages."""
        for record_id, at in erasures:
            c.execute(
                self._sql(
                    f"INSERT INTO {self._table('customers')} (record_id, sealed_key, erased_at) VALUES (?, NULL, ?) "
                    "ON CONFLICT (record_id) DO UPDATE SET sealed_key = NULL, erased_at = excluded.erased_at"
                ),
                [record_id, ts(at)],
            )
            c.execute(self._sql(f"UPDATE {self._table('touchpoints')} SET sealed = NULL WHERE record_id = ?"), [record_id])
            if publish:
                c.execute(
                    self._sql(
                        f"INSERT INTO {self._table('stage_changes')} (scope, subject, kind, occurred_at) VALUES (?, ?, ?, ?)"
                    ),
                    [Scope.customer.value, record_id, "erased", ts(at)],
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
        """The outbox of stage transitions (and erasures), in the order they were derived."""
        rows = self._query(
            f"SELECT * FROM {self._table('stage_changes')} WHERE seq > ? ORDER BY seq LIMIT ?", [seq, limit]
        )
        return [
            {**(_transition_from_row(row) if row["kind"] != "erased" else {"at": parse_ts(row["occurred_at"])}),
             "seq": row["seq"], "scope": row["scope"], "subject": row["subject"], "kind": row["kind"],
             "awareness_stage": row["awareness_stage"]}
            for row in rows
        ]

    # -- generations ------------------------------------------------------------
    # The read models live in generations: the service reads and writes the live one, a rebuild
    # derives the next beside it and switches them in one transaction (see projections/rebuild.py).

    def open(self, playbook: str | None) -> None:
        """Read from the live generation (on a store without one: generation 1, derived under
        `playbook`, or None when unknown); make sure its tables and columns exist."""
        generations = self._table("generations")
        if not self._query(f"SELECT generation FROM {generations} WHERE state = 'live'"):
            self.execute(
                f"INSERT INTO {generations} (generation, playbook, state, started_at, live_at) "
                "VALUES (1, ?, 'live', ?, ?) ON CONFLICT (generation) DO NOTHING",
                [playbook, ts(_now()), ts(_now())],
            )
        self.follow()
        for statement in self._generation_ddl(self.generation):
            self.execute(statement)
        missing = [  # stores from before playbook versions, and before analytics
            (table, column, kind)
            for table, column, kind in (
                ("positions", "playbook", "TEXT"), ("transitions", "playbook", "TEXT"),
                ("transitions", "from_since", "TEXT"), ("transitions", "stay_seconds", "DOUBLE PRECISION"),
                ("touchpoints", "customer", "TEXT"),
            )
            if not self._has_column(table, column)
        ]
        for table, column, kind in missing:
            self.execute(f"ALTER TABLE {self._table(table)} ADD COLUMN {column} {kind}")
        if ("touchpoints", "customer", "TEXT") in missing:  # a store from before links: each its own customer
            self.execute(f"UPDATE {self._table('touchpoints')} SET customer = record_id")
            # A record's touchpoints in occurred order are read by customer now (touchpoints_customer).
            self.execute(f"DROP INDEX IF EXISTS {self._name('touchpoints_occurred')}")
        for statement in self._analytics_ddl(self.generation):
            self.execute(statement)
        if not self._query(f"SELECT 1 FROM {self._table('counts')} LIMIT 1"):
            self.count_all()

    def _has_column(self, table: str, column: str) -> bool:
        """Asked of the catalogue: a failing query (say, the database away) is an error, not a missing column."""
        return column in self._columns(self._name(table))

    def count_all(self) -> None:
        """Count again, from the positions, the instances in each combination of stages (a store
        from before the counters, or rows written around the projection, as benchmarks do)."""
        by_subject: dict[tuple[str, str], dict[str, list[Any]]] = {}
        for row in self._query(f"SELECT scope, subject, journey, stage, defects FROM {self._table('positions')}"):
            by_subject.setdefault((row["scope"], row["subject"]), {})[row["journey"]] = [row["stage"], bool(row["defects"])]
        totals: dict[tuple[str, str], int] = {}
        for (scope, _subject), found in by_subject.items():
            key = (scope, combination(self.playbook, Scope(scope), found))
            totals[key] = totals.get(key, 0) + 1
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {self._table('counts')}")
            self._count(c, totals)

    def _count(self, c: Any, deltas: dict[tuple[str, str], int]) -> None:
        """Add to the instances counted in each combination of stages."""
        rows = [[scope, key, n] for (scope, key), n in sorted(deltas.items()) if n]
        for chunk in _chunks(rows):
            c.execute(
                self._sql(
                    f"INSERT INTO {self._table('counts')} AS k (scope, combination, instances) VALUES "
                    f"{', '.join(['(?, ?, ?)'] * len(chunk))} "
                    "ON CONFLICT (scope, combination) DO UPDATE SET instances = k.instances + excluded.instances"
                ),
                [value for row in chunk for value in row],
            )

    def counts(self) -> list[dict[str, Any]]:
        """Every combination of stages with instances in it: scope, {journey: [stage, defects]}, instances."""
        rows = self._query(f"SELECT scope, combination, instances FROM {self._table('counts')} WHERE instances > 0")
        return [{"scope": r["scope"], "stages": json.loads(r["combination"]), "instances": r["instances"]} for r in rows]

    def follow(self) -> bool:
        """Read and write the live generation from now on; True if it changed."""
        rows = self._query(f"SELECT generation, playbook FROM {self._table('generations')} WHERE state = 'live'")
        if not rows:
            return False
        self.live_playbook: str | None = rows[0]["playbook"]
        if rows[0]["generation"] == self.generation:
            return False
        self.generation = rows[0]["generation"]
        return True

    def generations(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query(f"SELECT * FROM {self._table('generations')} ORDER BY generation")]

    def begin_generation(self, playbook: Playbook, fingerprint: str) -> JourneyViewSQL:
        """A view of a new generation, its tables created empty, for a rebuild to derive."""
        generations = self._table("generations")
        with self.datastore.transaction(commit=True) as c:
            # One statement that writes first: on SQLite a transaction that reads and then writes
            # fails at once ("database is locked") if another connection wrote in between.
            c.execute(
                self._sql(
                    f"INSERT INTO {generations} (generation, playbook, state, started_at) "
                    f"SELECT COALESCE(MAX(generation), 0) + 1, ?, 'building', ? FROM {generations} RETURNING generation"
                ),
                [fingerprint, ts(_now())],
            )
            generation = c.fetchone()["generation"]
        builder = copy.copy(self)
        builder.__dict__.pop("_initial_stages", None)
        builder.generation, builder.playbook, builder.building = generation, playbook, True
        for statement in self._generation_ddl(generation) + self._analytics_ddl(generation):
            builder.execute(statement)
        return builder

    def switch_to(
        self, builder: JourneyViewSQL, application_name: str,
        revisions: Callable[[Callable[[str, list[Any]], list[Any]]], list[list[Any]]],
    ) -> list[list[Any]]:
        """Make the builder's generation the live one, if it has processed exactly what the live
        one has (NotCaughtUp, nothing changed, if not), with the revision rows `revisions` gives
        (it is given a query function in the switch's transaction); returns them.

        The live row is updated first: on PostgreSQL that waits for the projection batches that
        hold it (FOR SHARE) and holds off the next; on SQLite it takes the write lock. So no
        batch of the live generation lands between the check and the switch."""
        generations = self._table("generations")
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(f"UPDATE {generations} SET state = 'retired', retired_at = ? WHERE generation = ? AND state = 'live'"),
                [ts(_now()), self.generation],
            )
            if getattr(c, "sqlite_cursor", c).rowcount != 1:
                raise GenerationChanged("another rebuild switched the read models first")
            live = self._max_tracking_id(self.tracking_name(application_name), c) or 0
            built = self._max_tracking_id(builder.tracking_name(application_name), c) or 0
            if live != built:
                raise NotCaughtUp(live)
            c.execute(
                self._sql(f"UPDATE {generations} SET state = 'live', live_at = ? WHERE generation = ?"),
                [ts(_now()), builder.generation],
            )

            def run(statement: str, params: list[Any]) -> list[Any]:
                c.execute(self._sql(statement), params)
                return c.fetchall()

            rows = revisions(run)
            self._insert(c, "revisions", REVISION_COLUMNS, rows)
        self.generation, self.live_playbook = builder.generation, None
        self.follow()
        return rows

    def drop_generations(self, application_name: str, states: Sequence[str], retired_before: datetime | None = None) -> list[int]:
        """Drop the tables of generations in these states (retired: before the given time)."""
        marks = ", ".join("?" * len(states))
        rows = self._query(
            f"SELECT generation FROM {self._table('generations')} WHERE state IN ({marks}) "
            "AND (state != 'retired' OR retired_at < ?)",
            [*states, ts(retired_before or _now())],
        )
        dropped = []
        for row in rows:
            old = copy.copy(self)
            old.generation = row["generation"]
            with self.datastore.transaction(commit=True) as c:
                for name in GENERATIONAL:
                    c.execute(f"DROP TABLE IF EXISTS {old._table(name)}")
                c.execute(
                    self._sql(f"DELETE FROM {self._tracking_table()} WHERE application_name = ?"),
                    [old.tracking_name(application_name)],
                )
                c.execute(
                    self._sql(f"UPDATE {self._table('generations')} SET state = 'dropped' WHERE generation = ?"),
                    [old.generation],
                )
            dropped.append(old.generation)
        return dropped

    def _claim(self, c: Any) -> None:
        """In a batch's transaction: fail if this view's generation is no longer the live one."""
        c.execute(
            self._sql(f"UPDATE {self._table('generations')} SET state = state WHERE generation = ? AND state = 'live'"),
            [self.generation],
        )
        if getattr(c, "sqlite_cursor", c).rowcount != 1:
            raise GenerationChanged(f"generation {self.generation} of the read models is no longer the live one")

    def register(self, playbook: Playbook) -> int:
        """The version number of a playbook (by content), given the next one the first time it is seen."""
        playbooks = self._table("playbooks")
        for _ in range(5):  # two processes may take the same number at once: one of them retries
            rows = self._query(f"SELECT version FROM {playbooks} WHERE fingerprint = ?", [playbook.fingerprint])
            if rows:
                return int(rows[0]["version"])
            try:
                self.execute(
                    f"INSERT INTO {playbooks} (fingerprint, version, name, registered_at, body) "
                    f"SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ? FROM {playbooks}",
                    [playbook.fingerprint, playbook.name, ts(_now()), playbook.canonical()],
                )
            except Exception:  # the fingerprint or the version was taken meanwhile
                continue
        raise RuntimeError("could not register the playbook")

    def playbooks(self) -> dict[str, dict[str, Any]]:
        """Every playbook that derived read models: fingerprint -> name, version, registered_at."""
        rows = self._query(f"SELECT fingerprint, version, name, registered_at FROM {self._table('playbooks')}")
        return {r["fingerprint"]: {**dict(r), "registered_at": parse_ts(r["registered_at"])} for r in rows}

    def revisions_of(self, scope: Scope, subjects: Sequence[str]) -> list[dict[str, Any]]:
        """The revisions of instances' histories, in the order they were made."""
        found = []
        for chunk in _chunks(list(subjects)):
            found += self._query(
                f"SELECT * FROM {self._table('revisions')} WHERE scope = ? AND subject IN ({', '.join('?' * len(chunk))})",
                [scope.value, *chunk],
            )
        return [_revision_from_row(row) for row in sorted(found, key=lambda r: r["seq"])]

    # -- queries ----------------------------------------------------------------

    def customer(self, record_id: str) -> dict[str, Any] | None:
        """A customer record: its stages, touchpoint count, sealed key and erasure."""
        return self.subject(Scope.customer, record_id)

    def subject(self, scope: Scope, subject: str) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT * FROM {self._table('subjects')} WHERE scope = ? AND subject = ?", [scope.value, subject]
        )
        if not rows:
            return None
        return self._members(scope, rows)[0]

    def _members(self, scope: Scope, rows: list[Any]) -> list[dict[str, Any]]:
        """Subject rows with their stages (and, for customers, sealed key and erasure)."""
        subjects = [r["subject"] for r in rows]
        positions = self._positions(subjects, scope)
        facts: dict[str, Any] = {}
        if scope is Scope.customer:
            for chunk in _chunks(subjects):
                marks = ", ".join("?" * len(chunk))
                for row in self._query(f"SELECT * FROM {self._table('customers')} WHERE record_id IN ({marks})", chunk):
                    facts[row["record_id"]] = row
        out = []
        for row in rows:
            fact = facts.get(row["subject"])
            out.append({
                "record_id": row["subject"],
                "subject": row["subject"],
                "stages": self._stages(scope, positions.get(row["subject"], []), row),
                "touchpoint_count": row["touchpoint_count"],
                "sealed_key": fact["sealed_key"] if fact else None,
                "erased_at": parse_ts(fact["erased_at"]) if fact else None,
            })
        return out

    def touchpoints_of(self, record_id: str) -> list[dict[str, Any]]:
        """A customer record's touchpoints in occurred order."""
        return self.touchpoints_where("record_id", record_id)

    def touchpoints_where(self, column: str, value: str) -> list[dict[str, Any]]:
        """The touchpoints carrying a key (record, deal, account or case), in occurred order."""
        if column not in {*SUBJECT_COLUMN.values(), "record_id"}:
            raise ValueError(f"not a subject column: {column}")
        rows = self._query(
            f"SELECT * FROM {self._table('touchpoints')} WHERE {column} = ? ORDER BY occurred_at, touchpoint_id",
            [value],
        )
        return sorted((_touchpoint_from_row(row) for row in rows), key=lambda t: (t["occurred_at"], t["touchpoint_id"]))

    def transitions_of(
        self, subject: str, since: datetime | None = None, scope: Scope = Scope.customer
    ) -> list[dict[str, Any]]:
        """An instance's stage history in occurred order (from `since` on, if given)."""
        rows = self._query(
            f"SELECT * FROM {self._table('transitions')} WHERE scope = ? AND subject = ? AND occurred_at >= ? "
            "ORDER BY occurred_at, touchpoint_id",
            [scope.value, subject, ts(since) or ""],
        )
        order = {j: i for i, j in enumerate(self.playbook.journeys)}
        found = [_transition_from_row(row) for row in rows]
        return sorted(found, key=lambda t: (t["at"], t["touchpoint_id"], order.get(t["journey"], len(order))))

    def segment(
        self, filters: dict[str, str | None], after: str | None, limit: int, scope: Scope = Scope.customer,
        since_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Instances of a scope in the given stages (None: journey not started), in subject order;
        with `since_before`, only those in the first filter's stage since before then."""
        positions, subjects = self._table("positions"), self._table("subjects")
        joins, where, params = [], [], []
        items = list(filters.items())
        if items:
            base = f"{positions} p0"
            for n, (journey, stage) in enumerate(items):
                condition = f"p{n}.journey = ? AND " + (f"p{n}.stage IS NULL" if stage is None else f"p{n}.stage = ?")
                values: list[Any] = [journey] + ([] if stage is None else [stage])
                if n == 0:
                    if since_before is not None:
                        condition += " AND p0.since < ?"
                        values.append(ts(since_before))
                    where.append(condition)
                    params_where = values
                else:
                    joins.append(f"JOIN {positions} p{n} ON p{n}.subject = p0.subject AND {condition}")
                    params += values
            params += params_where
            key = "p0.subject"
        else:
            base = f"{subjects} p0"
            where.append("p0.scope = ?")
            params.append(scope.value)
            key = "p0.subject"
        if scope is Scope.customer:
            joins.append(f"JOIN {self._table('customers')} c ON c.record_id = {key} AND c.erased_at IS NULL")
        if items:  # the subject rows themselves, in the same query
            joins.append(f"JOIN {subjects} s ON s.scope = ? AND s.subject = {key}")
            params = [*params[: len(params) - len(params_where)], scope.value, *params_where]
            columns = "s.*"
        else:
            columns = "p0.*"
        if after is not None:
            # The bound on every joined key, not only the first: otherwise PostgreSQL may
            # merge-join by scanning the customers' key from its start at every page.
            bounded = [key] + (["c.record_id"] if scope is Scope.customer else []) + (["s.subject"] if items else [])
            where += [f"{column} > ?" for column in bounded]
            params += [after] * len(bounded)
        rows = self._query(
            f"SELECT {columns} FROM {base} {' '.join(joins)} WHERE {' AND '.join(where)} ORDER BY {key} LIMIT ?",
            [*params, limit],
        )
        return self._members(scope, rows) if rows else []

    def summary(self) -> dict[str, dict[str | None, int]]:
        """How many instances are in each stage of each journey (None: not started)."""
        counts: dict[str, dict[str | None, int]] = {j: {} for j in self.playbook.journeys}
        for row in self.counts():  # the counters: a few hundred rows, however many instances
            for journey, (stage, _) in row["stages"].items():
                found = counts.setdefault(journey, {})
                found[stage] = found.get(stage, 0) + row["instances"]
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

    def _columns(self, table: str) -> set[str]:
        return {row["name"] for row in self._query(f"PRAGMA table_info({table})")}

    def _tracking_table(self) -> str:
        return "tracking"


class PostgresJourneyView(JourneyViewSQL, PostgresTrackingRecorder):
    param = "%s"
    serial_key = "BIGSERIAL PRIMARY KEY"

    def __init__(self, datastore: Any, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(self._view_ddl())

    def _table(self, name: str, generation: int | None = None) -> str:
        return f'"{self.datastore.schema}".{self._name(name, generation)}'

    def _columns(self, table: str) -> set[str]:
        rows = self._query("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                           [self.datastore.schema, table])
        return {row["column_name"] for row in rows}

    def _ddl(self, statement: str) -> Any:
        return SQL(statement)

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
        arrays = ", ".join(f"%s::{COLUMN_TYPES.get(col, 'text')}[]" for col in columns)
        c.execute(
            f"INSERT INTO {self._table(table)} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}) {conflict}",
            [list(column) for column in zip(*rows, strict=True)],
        )


def combination(playbook: Playbook, scope: Scope, marks: dict[str, list[Any]]) -> str:
    """The counters' key: each journey of the scope's [stage, has process defects], as JSON."""
    return json.dumps({j: marks.get(j, [playbook.journeys[j].initial, False]) for j in playbook.journeys_of(scope)})


def _marks_of(stages: Stages) -> dict[str, list[Any]]:
    return {j: [p.stage, bool(stages.defects.get(j))] for j, p in stages.positions.items()}


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _position(row: Any) -> Position:
    return Position(row["stage"], parse_ts(row["since"]), row["cause_id"], row["cause_type"])


def _subject_row(change: SubjectChange) -> list[Any]:
    stages = change.stages
    last_at, last_id = stages.last_key or (None, None)
    return [change.scope.value, change.subject, ts(stages.first_seen), ts(last_at), last_id, change.touchpoint_count]


def _position_row(change: SubjectChange, journey: str, fingerprint: str) -> list[Any]:
    p = change.stages[journey]
    met = change.stages.met.get(journey)
    defects = change.stages.defects.get(journey)
    return [
        change.scope.value, change.subject, journey, p.stage, ts(p.since), p.touchpoint_id, p.touchpoint_type,
        json.dumps([[c.name, ts(c.since), c.touchpoint_id] for c in met]) if met else None,
        json.dumps(list(defects)) if defects else None, fingerprint,
    ]


def _touchpoint_row(t: dict[str, Any]) -> list[Any]:
    criteria = t.get("criteria")
    return [
        t["record_id"], t["touchpoint_id"], t["type"], t["channel"], ts(t["occurred_at"]), ts(t["recorded_at"]),
        t["source"], t["campaign"], t["deal_id"], t.get("account_id"), t.get("case_id"), t.get("buying_role"),
        json.dumps(list(criteria)) if criteria else None, t["sealed"], t["customer"],
    ]


def _touchpoint_from_row(row: Any) -> dict[str, Any]:
    found = {col: row[col] for col in TOUCHPOINT_COLUMNS}
    found["occurred_at"] = parse_ts(found["occurred_at"])
    found["recorded_at"] = parse_ts(found["recorded_at"])
    found["criteria"] = json.loads(found["criteria"]) if found["criteria"] else []
    return found


def _transition_row(change: SubjectChange, t: Transition, fingerprint: str) -> list[Any]:
    return [
        change.scope.value, change.subject, t.journey, ts(t.at), t.touchpoint_id, t.from_stage, t.to_stage,
        json.dumps(list(t.skipped)), int(t.restart), t.touchpoint_type,
        json.dumps(list(t.defects)) if t.defects else None, change.causes.get(t.touchpoint_id), fingerprint,
        ts(t.from_since), (t.at - t.from_since).total_seconds() if t.from_since is not None else None,
    ]


def revision_row(scope: Scope, subject: str, r: Revision, fingerprint: str) -> list[Any]:
    def transitions(found: list[dict[str, Any]]) -> str:
        return json.dumps([{**t, "at": ts(t["at"]), "from_since": ts(t.get("from_since"))} for t in found])

    return [
        scope.value, subject, ts(r.recorded_at), r.kind, r.reason, r.cause_touchpoint_id, r.cause_record_id,
        fingerprint, json.dumps(r.before), json.dumps(r.after), transitions(r.removed), transitions(r.added),
    ]


def _revision_from_row(row: Any) -> dict[str, Any]:
    def transitions(text: str) -> list[dict[str, Any]]:
        return [{**t, "at": parse_ts(t["at"]), "from_since": parse_ts(t.get("from_since"))} for t in json.loads(text)]

    return {
        "seq": row["seq"], "scope": row["scope"], "subject": row["subject"], "kind": row["kind"],
        "reason": row["reason"], "recorded_at": parse_ts(row["recorded_at"]),
        "cause_touchpoint_id": row["cause_touchpoint_id"], "cause_record_id": row["cause_record_id"],
        "playbook": row["playbook"], "before": json.loads(row["before"]), "after": json.loads(row["after"]),
        "removed": transitions(row["removed"]), "added": transitions(row["added"]),
    }


def _outbox_row(change: SubjectChange, t: Transition) -> list[Any]:
    awareness = change.stages.positions.get(Journey.awareness.value)
    return [
        change.scope.value, change.subject, "stage", t.journey, t.from_stage, t.to_stage,
        json.dumps(list(t.skipped)), int(t.restart), ts(t.at), t.touchpoint_id, t.touchpoint_type,
        awareness.stage if awareness else None, json.dumps(list(t.defects)) if t.defects else None,
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
        "defects": json.loads(row["defects"]) if row["defects"] else [],
        # keys(): `in` on an sqlite3.Row looks at its values
        "record_id": row["record_id"] if "record_id" in row.keys() else None,  # noqa: SIM118
        "playbook": row["playbook"] if "playbook" in row.keys() else None,  # noqa: SIM118
        "from_since": parse_ts(row["from_since"]) if "from_since" in row.keys() else None,  # noqa: SIM118
    }


