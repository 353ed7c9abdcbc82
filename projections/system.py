"""The composition root: the application, its view, projection and runner, from settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment

from journeys import metrics
from journeys.application import CustomerNotFoundError, JourneysApp, Recorded
from journeys.playbook import Playbook, load_playbook
from journeys.settings import Settings
from journeys.storage.audit import AuditTrail
from journeys.storage.dialect import Dialect, dialect_for
from journeys.storage.keyring import Keyring
from journeys.touchpoint import Touchpoint
from projections.analytics import Analytics
from projections.bulk import Workers
from projections.personal import PersonalData
from projections.runner import ProjectionRunner
from projections.spend import SpendBook
from projections.stages import StageProjection
from projections.storage.migrations import Step, migrate
from projections.storage.view import JourneyView, view_class


@dataclass(frozen=True)
class Erased:
    record_id: UUID  # the record of the key asked for
    linked: list[UUID]  # the person's other records (identity links), erased with it


@dataclass
class System:
    settings: Settings
    playbook: Playbook
    app: JourneysApp
    view: JourneyView
    runner: ProjectionRunner
    keyring: Keyring
    personal: PersonalData
    audit: AuditTrail
    dialect: Dialect
    migrated: list[Step] = field(default_factory=list)  # the schema steps this start ran

    @classmethod
    def build(cls, settings: Settings, playbook: Playbook | None = None) -> System:
        """Everything the service, the consumers and the CLI run on, wired from settings: the one
        place that chooses the store's dialect; the store migrated to this version first."""
        playbook = playbook or load_playbook(settings.playbook)
        env = settings.eventsourcing_env()
        dialect = dialect_for(settings)
        with dialect.opening(settings, env):
            system = cls._build(settings, playbook, env, dialect)
        dialect.guard([cast(Any, system.app.recorder).datastore, system.view.datastore])
        return system

    @staticmethod
    def stores(settings: Settings, playbook: Playbook) -> tuple[JourneysApp, JourneyView]:
        """The event store and the view alone, of a store that is there (a bulk rebuild's worker
        processes read and write with these)."""
        env = settings.eventsourcing_env()
        dialect = dialect_for(settings)
        with dialect.opening(settings, env):
            return System._stores(settings, playbook, env, dialect)

    @staticmethod
    def _stores(settings: Settings, playbook: Playbook, env: dict[str, str], dialect: Dialect) -> tuple[JourneysApp, JourneyView]:
        app = JourneysApp(playbook, dialect, env=env, cache_size=settings.aggregate_cache_size)
        factory = InfrastructureFactory.construct(Environment(StageProjection.name, env))
        view = cast(JourneyView, factory.tracking_recorder(cast(Any, view_class(dialect))))
        view.playbook = playbook
        return app, view

    @classmethod
    def _build(cls, settings: Settings, playbook: Playbook, env: dict[str, str], dialect: Dialect) -> System:
        app, view = cls._stores(settings, playbook, env, dialect)
        audit = AuditTrail(view, app.recorder, dialect)
        new = app.recorder.max_notification_id() is None
        migrated = migrate(view, audit, has_events=not new)
        # A new store's read models are derived under this playbook; an older store's, under one not recorded.
        view.open(playbook.fingerprint if new else None)
        version = view.register(playbook)
        keyring = app.keyring = Keyring(view, settings.secrets(), settings.aggregate_cache_size)
        runner = ProjectionRunner(
            app,
            StageProjection(view, playbook),
            batch_size=settings.projection_batch_size,
            parts=settings.projection_parts,
            poll_interval=settings.projection_poll_interval,
            version=version,
            auto_rebuild=settings.auto_rebuild,
            rebuild_workers=Workers(settings if settings.shared_store else None, settings.rebuild_processes),
        )
        system = cls(settings, playbook, app, view, runner, keyring, PersonalData(view, keyring), audit, dialect, migrated)
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
