"""The store's schema version and the ordered steps that bring any earlier store to it.

Each step runs once per store, in order, at start (`System.build`) or by `journeys
migrate`, and is recorded in `jv_schema_versions` with when it ran. Steps are
idempotent, so one a crash interrupted (or that two SQLite processes starting at
once both ran) is simply run again; on PostgreSQL one process at a time migrates
(the dialect's `opening` lock). Events are never rewritten: a step adds beside them.

A store from before versions (no rows in jv_schema_versions) runs every step; step 4
is the only one that asks the catalogue, since such a store recorded nothing of
which columns it had. A later change to a table is a new step at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from journeys.storage.audit import AuditTrail
from journeys.storage.tables import ts
from projections.storage.rows import now
from projections.storage.schema import KEY_COLUMNS
from projections.storage.view import JourneyView

STORE_FORMAT = "3"  # 2: personal data sealed under per-customer data keys, records keyed by random ids;
# 3: every event hash-chained (journeys/chain.py).


class StoreFormatError(Exception):
    """The store was written by an earlier version whose format this one cannot read."""


@dataclass(frozen=True)
class Store:
    """What the steps work on."""

    view: JourneyView
    audit: AuditTrail
    has_events: bool


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: Callable[[Store], None]


def _format(store: Store) -> None:
    """Refuse a store written before personal data was encrypted, rather than misread it."""
    view = store.view
    meta = view.table("store_meta")
    view.execute(f"CREATE TABLE IF NOT EXISTS {meta} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    rows = view.query(f"SELECT value FROM {meta} WHERE name = 'format'")
    if rows and rows[0]["value"] in ("2", STORE_FORMAT):
        return
    if not rows and not store.has_events:
        view.execute(f"INSERT INTO {meta} (name, value) VALUES ('format', ?) ON CONFLICT (name) DO NOTHING", [STORE_FORMAT])
        return
    found = rows[0]["value"] if rows else "1 (from before encryption)"
    raise StoreFormatError(
        f"this store has format {found}; this version reads format {STORE_FORMAT}, where personal data is "
        "stored only encrypted. It cannot be migrated in place (events are immutable): start on a new "
        "database and publish the touchpoints again (they are idempotent), or keep running the earlier version."
    )


def _chain(store: Store) -> None:
    """Chain the events of a store from before the hash chain (format 2): hashes beside the events."""
    view = store.view
    meta = view.table("store_meta")
    if view.query(f"SELECT 1 FROM {meta} WHERE name = 'format' AND value = '2'"):
        store.audit.backfill()
        view.execute(f"UPDATE {meta} SET value = ? WHERE name = 'format'", [STORE_FORMAT])


def _run(view: JourneyView, statements: list[str]) -> None:
    for statement in statements:
        view.execute(statement)


def _tables(store: Store) -> None:
    _run(store.view, store.view.generation_ddl(analytics=False))


LEGACY_COLUMNS = (  # added by releases before versions: playbook versions, analytics, identity links
    ("positions", "playbook", "text"), ("transitions", "playbook", "text"), ("transitions", "from_since", "text"),
    ("transitions", "stay_seconds", "double precision"), ("touchpoints", "customer", "text"),
)


def _legacy_columns(store: Store) -> None:
    view = store.view
    missing = [(table, column, kind) for table, column, kind in LEGACY_COLUMNS if column not in view.columns(table)]
    for table, column, kind in missing:
        view.execute(f"ALTER TABLE {view.table(table)} ADD COLUMN {column} {kind}")
    if any(column == "customer" for _, column, _ in missing):  # a store from before links: each its own customer
        view.execute(f"UPDATE {view.table('touchpoints')} SET customer = record_id")
        # A record's touchpoints in occurred order are read by customer now (touchpoints_customer).
        view.execute(f"DROP INDEX IF EXISTS {view.table('touchpoints_occurred')}")


def _analytics_indexes(store: Store) -> None:
    _run(store.view, store.view.analytics_ddl())


def _history_index(store: Store) -> None:
    _run(store.view, store.view.history_ddl())


def _stay_counters(store: Store) -> None:
    _tables(store)  # the new tables, beside the others
    store.view.recount_stays()


def _credit_counters(store: Store) -> None:
    _tables(store)
    store.view.recount_credits()


def _counters(store: Store) -> None:
    if not store.view.query(f"SELECT 1 FROM {store.view.table('counts')} LIMIT 1"):
        store.view.count_all()


def _partial_key_indexes(store: Store) -> None:
    view = store.view
    for column in KEY_COLUMNS:
        view.execute(f"DROP INDEX IF EXISTS {view.table('touchpoints_' + column)}")
    _tables(store)


STEPS = (
    Step(1, "store format: personal data only encrypted (a store from before is refused)", _format),
    Step(2, "every event hash-chained (a format 2 store is chained beside its events)", _chain),
    Step(3, "the live generation's read-model tables and the projection's indexes", _tables),
    Step(4, "columns added before schema versions: playbook versions, stay durations, identity links", _legacy_columns),
    Step(5, "the indexes the analytics read", _analytics_indexes),
    Step(6, "the stage counters, counted from the positions", _counters),
    Step(7, "a customer record's touchpoints in occurred order, for history pages", _history_index),
    Step(8, "stay counters by day (ends, durations, open stays), counted from the stage history", _stay_counters),
    Step(9, "stay counters per campaign and per channel, counted from the touchpoints and the stage history",
         _stay_counters),
    Step(10, "attribution and lead counters by day, counted from the stage history and the touchpoints",
         _credit_counters),
    Step(11, "the touchpoints' deal, account and case indexes hold only the touchpoints that name one",
         _partial_key_indexes),
)
LATEST = STEPS[-1].version


def version(view: JourneyView) -> int:
    """The store's schema version: the last step recorded (0: a new store, or one from before versions)."""
    rows = view.query(f"SELECT MAX(version) AS v FROM {view.table('schema_versions')}")
    return int(rows[0]["v"] or 0)


def history(view: JourneyView) -> list[dict[str, Any]]:
    """Every step recorded, in order."""
    return [dict(r) for r in view.query(f"SELECT * FROM {view.table('schema_versions')} ORDER BY version")]


def migrate(view: JourneyView, audit: AuditTrail, has_events: bool) -> list[Step]:
    """Run the steps this store has not had, in order, each recorded once done; the steps run."""
    view.follow()  # the steps work on the live generation (a new store's: the first)
    done = version(view)
    store = Store(view, audit, has_events)
    applied = []
    for step in STEPS:
        if step.version <= done:
            continue
        step.apply(store)
        view.execute(
            f"INSERT INTO {view.table('schema_versions')} (version, description, applied_at) VALUES (?, ?, ?) "
            "ON CONFLICT (version) DO NOTHING",
            [step.version, step.description, ts(now())],
        )
        applied.append(step)
    return applied
