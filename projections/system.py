"""The composition root: the application, its view, projection and runner, from settings."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from psycopg import sql

from journeys import metrics
from journeys.application import CustomerNotFoundError, JourneysApp, Recorded
from journeys.playbook import Playbook, load_playbook
from journeys.settings import Settings
from journeys.storage.audit import AuditTrail
from journeys.storage.database import Breaker, guard, schema_lock, steady_reconnects
from journeys.storage.keyring import Keyring
from journeys.touchpoint import Touchpoint
from projections.analytics import Analytics
from projections.personal import PersonalData
from projections.runner import ProjectionRunner
from projections.spend import SpendBook
from projections.stages import StageProjection
from projections.view import JourneyViewSQL, PostgresJourneyView, SQLiteJourneyView

STORE_FORMAT = "3"  # 2: personal data sealed under per-customer data keys, records keyed by random ids;
# 3: every event hash-chained (journeys/chain.py). A format 2 store is chained on first start.


@dataclass(frozen=True)
class Erased:
    record_id: UUID  # the record of the key asked for
    linked: list[UUID]  # the person's other records (identity links), erased with it


class StoreFormatError(Exception):
    """The store was written by an earlier version whose format this one cannot read."""


@dataclass
class System:
    settings: Settings
    playbook: Playbook
    app: JourneysApp
    view: JourneyViewSQL
    runner: ProjectionRunner
    keyring: Keyring
    personal: PersonalData
    audit: AuditTrail

    @classmethod
    def build(cls, settings: Settings, playbook: Playbook | None = None) -> System:
        playbook = playbook or load_playbook(settings.playbook)
        env = settings.eventsourcing_env()
        if settings.is_sqlite:
            return cls._build(settings, playbook, env)
        steady_reconnects()
        os.environ.setdefault("PGCONNECT_TIMEOUT", str(settings.database_timeout))  # libpq's own connect
        with schema_lock(connect_args(env), env["POSTGRES_SCHEMA"]):  # one process at a time creates or migrates
            ensure_schema(env)
            system = cls._build(settings, playbook, env)
        breaker = Breaker()
        guard(cast(Any, system.app.recorder).datastore.pool, breaker)
        guard(system.view.datastore.pool, breaker)
        return system

    @classmethod
    def _build(cls, settings: Settings, playbook: Playbook, env: dict[str, str]) -> System:
        app = JourneysApp(playbook, env=env, cache_size=settings.aggregate_cache_size)
        view_class = SQLiteJourneyView if settings.is_sqlite else PostgresJourneyView
        factory = InfrastructureFactory.construct(Environment(StageProjection.name, env))
        view = cast(JourneyViewSQL, factory.tracking_recorder(view_class))
        view.playbook = playbook
        audit = AuditTrail(view, app.recorder, settings.is_sqlite)
        check_store_format(view, app, audit)
        # A new store's read models are derived under this playbook; an older store's, under one not recorded.
        view.open(playbook.fingerprint if app.recorder.max_notification_id() is None else None)
        version = view.register(playbook)
        keyring = app.keyring = Keyring(view, settings.secrets(), settings.aggregate_cache_size)
        runner = ProjectionRunner(
            app,
            StageProjection(view, playbook),
            batch_size=settings.projection_batch_size,
            poll_interval=settings.projection_poll_interval,
            version=version,
            auto_rebuild=settings.auto_rebuild,
        )
        system = cls(settings, playbook, app, view, runner, keyring, PersonalData(view, keyring), audit)
        app.complete_erasures()  # an erasure a crash interrupted is finished before anything else
        return system

    @property
    def analytics(self) -> Analytics:
        return Analytics(self.view, self.playbook)

    @property
    def spend(self) -> SpendBook:
        return SpendBook(self.view)

    def erase(self, customer_key: str, erased_by: str) -> Erased:
        """Crypto-shred a person: the customer's record and every record linked to it (identity
        stitching says they are the same person), in one operation (see JourneysApp.erase);
        then purge freed pages where the store can."""
        record_id = self.keyring.find(customer_key)
        if record_id is None:
            raise CustomerNotFoundError(customer_key)
        linked = self.linked_records(record_id)
        self.app.erase([record_id, *linked], erased_by)
        self.view.purge_freed(self.keyring.table)
        self.runner.poke()
        return Erased(record_id, linked)

    def linked_records(self, record_id: UUID) -> list[UUID]:
        """The other records of the same person: those it is linked to (from the events), and
        those linked to any of them (from the read model, made current first)."""
        self.runner.catch_up()
        above = self.app.linked_above(record_id)
        root = above[-1] if above else record_id
        below = {UUID(r) for r in self.view.linked_below(str(root))}
        return sorted({*above, root, *below} - {record_id}, key=str)

    def record(self, touchpoints: Sequence[Touchpoint], *args: Any, intake: str = "http", **kwargs: Any) -> Recorded:
        """Record touchpoints (see JourneysApp.record), count them by outcome, wake the projections."""
        recorded = self.app.record(touchpoints, *args, **kwargs)
        for result in recorded.results:
            metrics.TOUCHPOINTS.labels(result.outcome.value, intake).inc()
        if recorded.position is not None:
            self.runner.poke()
        return recorded

    # -- audit ---------------------------------------------------------------------------

    def audit_records(self, customer_key: str | None = None, deal_id: str | None = None) -> list[str] | None:
        """The records an audit of a customer or a deal covers (None: all); LookupError if none."""
        if customer_key is not None:
            record = self.keyring.find(customer_key)
            if record is None:
                raise LookupError(f"no touchpoint has been recorded for customer {customer_key!r}")
            return [str(record)]
        if deal_id is not None:
            records = sorted({t["record_id"] for t in self.view.touchpoints_where("deal_id", deal_id)})
            if not records:
                raise LookupError(f"no touchpoint with deal_id {deal_id!r} has been recorded")
            return records
        return None

    def export(self, customer_key: str | None = None, deal_id: str | None = None,
               checkpoint: int | None = None) -> Iterator[str]:
        """An export's lines (see AuditTrail.export). For a deal: the contacts' chains, with the bytes
        of the deal's touchpoints and only the hashes of their other events."""
        records = self.audit_records(customer_key, deal_id)
        if deal_id is None:
            return self.audit.export(records, selection={"customer": customer_key} if customer_key else None,
                                     checkpoint_seq=checkpoint)

        def in_deal(stored: Any) -> bool:
            event = self.app.mapper.to_domain_event(stored)
            return getattr(event, "deal_id", None) == deal_id

        return self.audit.export(records, in_deal, {"deal": deal_id}, checkpoint)

    def close(self) -> None:
        self.runner.stop()
        self.app.close()
        self.view.datastore.close()


def check_store_format(view: JourneyViewSQL, app: JourneysApp, audit: AuditTrail) -> None:
    """Refuse a store written before personal data was encrypted, rather than misread it;
    chain the events of a store from before the hash chain."""
    meta = view.table("store_meta")
    view.execute(f"CREATE TABLE IF NOT EXISTS {meta} (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    rows = view.query(f"SELECT value FROM {meta} WHERE name = 'format'")
    if rows and rows[0]["value"] == STORE_FORMAT:
        return
    if rows and rows[0]["value"] == "2":
        audit.backfill()  # adds hashes beside the events; the events themselves are not touched
        view.execute(f"UPDATE {meta} SET value = ? WHERE name = 'format'", [STORE_FORMAT])
        return
    if not rows and app.recorder.max_notification_id() is None:
        view.execute(f"INSERT INTO {meta} (name, value) VALUES ('format', ?) ON CONFLICT (name) DO NOTHING", [STORE_FORMAT])
        return
    found = rows[0]["value"] if rows else "1 (from before encryption)"
    raise StoreFormatError(
        f"this store has format {found}; this version reads format {STORE_FORMAT}, where personal data is "
        "stored only encrypted. It cannot be migrated in place (events are immutable): start on a new "
        "database and publish the touchpoints again (they are idempotent), or keep running the earlier version."
    )


def connect_args(env: dict[str, str]) -> dict[str, Any]:
    """psycopg.connect's arguments for the database eventsourcing's settings name."""
    return {"dbname": env["POSTGRES_DBNAME"], "host": env["POSTGRES_HOST"], "port": env["POSTGRES_PORT"],
            "user": env["POSTGRES_USER"], "password": env["POSTGRES_PASSWORD"] or None}


def ensure_schema(env: dict[str, str]) -> None:
    """eventsourcing does not create a PostgreSQL schema; make sure it exists."""
    schema = env.get("POSTGRES_SCHEMA", "public")
    if schema == "public":
        return
    with psycopg.connect(**connect_args(env), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
