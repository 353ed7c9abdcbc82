"""The journeys application: records touchpoints on customers, replays their history."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking

from journeys.crypto import DataKey
from journeys.customer import (
    Customer,
    CustomerErasedError,
    IdentityConflictError,
    IdentityLink,
    Outcome,
    RecordedTouchpoint,
    TouchpointConflictError,
    touchpoint_from_event,
)
from journeys.playbook import Playbook
from journeys.retry import against
from journeys.stages import Derivation, derive
from journeys.storage.dialect import Dialect
from journeys.storage.keyring import Keyring
from journeys.storage.repository import CustomerRepository
from journeys.touchpoint import Touchpoint


class CustomerNotFoundError(Exception):
    def __init__(self, customer_key: str):
        super().__init__("no touchpoint has been recorded for this customer key (or it was erased)")
        self.customer_key = customer_key


class ConcurrencyError(Exception):
    """Concurrent writers kept winning; the batch was not recorded (safe to retry)."""


class AlreadyRecordedError(Exception):
    """The tracked source position was recorded before: this input was applied already."""


@dataclass(frozen=True)
class Result:
    """What happened to one touchpoint of a request."""

    outcome: Outcome
    touchpoint_id: str | None = None
    customer_id: str | None = None
    known_type: bool = True
    error: str | None = None


@dataclass
class Recorded:
    """The results of one write, and the notification position it reached."""

    results: list[Result]
    position: int | None = None
    links: list[Result] = field(default_factory=list)  # of the identity links, in the order given


@dataclass(frozen=True)
class Replay:
    customer_id: str
    record_id: UUID
    erased: bool
    touchpoints: list[RecordedTouchpoint]
    derivation: Derivation


class JourneysApp(Application[UUID]):
    """Every touchpoint is an immutable event on a Customer aggregate."""

    name = "journeys"
    max_attempts = 8
    is_snapshotting_enabled = True  # taken every SNAPSHOT_INTERVAL events, see CustomerRepository

    keyring: Keyring  # given by the composition root, which owns the database beside the events

    def __init__(
        self, playbook: Playbook, dialect: Dialect, env: dict[str, str] | None = None, cache_size: int = 10_000
    ):
        super().__init__(env)
        self.playbook = playbook
        self.customers = CustomerRepository(self.recorder, self.snapshots, self.mapper, cache_size, dialect)
        # Writes serialise in the database anyway (one writer in SQLite, a table lock in
        # eventsourcing's PostgreSQL recorder); in-process they share cached aggregates.
        self._write_lock = threading.Lock()

    def construct_recorder(self) -> ProcessRecorder:
        """A recorder that can store a source position (a Kafka offset) with the events."""
        return self.factory.process_recorder()

    def source_position(self, source: str) -> int | None:
        """The last position of an input source (e.g. a Kafka partition) recorded with events."""
        return self.recorder.max_tracking_id(source)  # type: ignore[attr-defined]

    def record(
        self,
        touchpoints: Sequence[Touchpoint],
        tracking: Tracking | None = None,
        before_save: Callable[[list[Result]], None] | None = None,
        links: Sequence[IdentityLink] = (),
    ) -> Recorded:
        """Record touchpoints (and identity links) in one transaction; retried when a concurrent
        writer wins.

        `tracking` (an input source's position) is stored in the same transaction, so
        the same input is never applied twice. `before_save` sees the results (e.g.
        the conflicts) before anything is stored.
        """
        with self._write_lock:
            try:
                for attempt in against((IntegrityError, CustomerErasedError), self.max_attempts, jitter=0.005):
                    with attempt:
                        return self._record_once(touchpoints, tracking, before_save, links)
            except (IntegrityError, CustomerErasedError):
                raise ConcurrencyError(f"gave up after {self.max_attempts} attempts against concurrent writers") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _record_once(
        self,
        touchpoints: Sequence[Touchpoint],
        tracking: Tracking | None,
        before_save: Callable[[list[Result]], None] | None,
        links: Sequence[IdentityLink],
    ) -> Recorded:
        """One attempt: IntegrityError or CustomerErasedError when a concurrent writer won, or the
        customer was erased meanwhile (its key now resolves to a new record): worth another."""
        records = self.keyring.resolve(
            [*(t.customer_id for t in touchpoints), *(k for x in links for k in (x.anonymous_key, x.user_key))]
        )
        customers = self.customers.get_many({record_id for record_id, _ in records.values()})
        known = self.customers.fingerprints({(records[t.customer_id][0], t.touchpoint_id) for t in touchpoints})
        versions = {i: c.version for i, c in customers.items()}
        try:  # commands mutate cached customers: anything failing below evicts them
            results = [self._apply(customers, records, known, tp) for tp in touchpoints]
            linked = [self._link(customers, records, x) for x in links]
            if before_save is not None:
                before_save(results)
            new_events = [e for c in customers.values() for e in c.collect_events()]
            index = [
                (str(e.originator_id), e.touchpoint_id, e.fingerprint)
                for e in new_events if isinstance(e, Customer.TouchpointRecorded)
            ]
            recordings = self.events.put(new_events, tracking=tracking, index=index) if (new_events or tracking) else []
        except (IntegrityError, CustomerErasedError):
            self.customers.evict(customers)
            if tracking is not None and self._was_recorded(tracking):
                raise AlreadyRecordedError(tracking.application_name) from None
            raise
        except BaseException:
            self.customers.evict(customers)
            raise
        self.customers.keep(customers.values())
        self.customers.snapshot_if_due(customers.values(), versions)
        position = max((r.notification.id for r in recordings), default=None)
        return Recorded(results, position, linked)

    def _was_recorded(self, tracking: Tracking) -> bool:
        recorded = self.source_position(tracking.application_name)
        return recorded is not None and recorded >= tracking.notification_id

    def _apply(
        self,
        customers: dict[UUID, Customer],
        records: dict[str, tuple[UUID, DataKey]],
        known: dict[tuple[UUID, str], str],
        touchpoint: Touchpoint,
    ) -> Result:
        key = touchpoint.customer_id
        record_id, data_key = records[key]
        customer = customers.get(record_id)
        if customer is None:
            customer = customers[record_id] = Customer.register(record_id, key, data_key)
        known_type = self.playbook.knows(touchpoint.type)
        try:
            outcome, fingerprint = customer.record(touchpoint, data_key, known.get((record_id, touchpoint.touchpoint_id)))
        except TouchpointConflictError as error:
            return Result(Outcome.conflict, touchpoint.touchpoint_id, key, known_type, str(error))
        known[(record_id, touchpoint.touchpoint_id)] = fingerprint  # a repeat later in the batch
        return Result(outcome, touchpoint.touchpoint_id, key, known_type)

    def _link(self, customers: dict[UUID, Customer], records: dict[str, tuple[UUID, DataKey]], link: IdentityLink) -> Result:
        anonymous, target = records[link.anonymous_key][0], records[link.user_key][0]
        if anonymous == target:
            return Result(Outcome.invalid, link.message_id, link.user_key, error="the two ids are the same customer")
        for key in (link.anonymous_key, link.user_key):
            record_id, data_key = records[key]
            if record_id not in customers:
                customers[record_id] = Customer.register(record_id, key, data_key)
        at: UUID | None = target  # the target's own links must not lead back: no circles
        seen: set[UUID] = set()
        while at is not None and at not in seen:
            if at == anonymous:
                return Result(Outcome.conflict, link.message_id, link.user_key,
                              error="the known customer is linked to this visitor already: that would be a circle")
            seen.add(at)
            if at not in customers:
                customers.update(self.customers.get_many([at]))
            found = customers.get(at)
            at = UUID(found.linked_to) if found is not None and found.linked_to else None
        try:
            outcome = customers[anonymous].link(target, link.message_id, link.call)
        except IdentityConflictError as error:
            return Result(Outcome.conflict, link.message_id, link.user_key, error=str(error))
        return Result(outcome, link.message_id, link.user_key)

    def unlink(self, customer_key: str, unlinked_by: str) -> UUID | None:
        """Undo the customer's link to another (it was an anonymous visitor's record); the record
        it was linked to, or None if it was linked to none."""
        record_id = self.keyring.find(customer_key)
        if record_id is None:
            raise CustomerNotFoundError(customer_key)
        was = self._update(record_id, lambda customer: customer.unlink(unlinked_by))
        return UUID(was) if was else None

    def replay(self, customer_key: str, as_of: datetime | None = None, known_at: datetime | None = None) -> Replay:
        """An auditor's view: the customer's stored events, folded by the playbook (only those
        recorded by `known_at`, if given: the answer as it was known then)."""
        record_id = self.keyring.find(customer_key)
        if record_id is None:
            raise CustomerNotFoundError(customer_key)
        return self.replay_record(record_id, as_of, customer_key, known_at)

    def replay_record(
        self, record_id: UUID, as_of: datetime | None = None, label: str | None = None, known_at: datetime | None = None
    ) -> Replay:
        """The same by record id: erased records too, with 'erased' in place of personal data."""
        key = self.keyring.data_keys([record_id]).get(record_id)
        events = list(self.events.get(record_id))
        touchpoints = [
            touchpoint_from_event(e, key) for e in events
            if isinstance(e, Customer.TouchpointRecorded) and (known_at is None or e.timestamp <= known_at)
        ]
        if not touchpoints:
            raise CustomerNotFoundError(label or str(record_id))
        touchpoints.sort(key=lambda t: (t.occurred_at, t.touchpoint_id))
        erased = any(isinstance(e, Customer.Erased) for e in events)
        return Replay(label or str(record_id), record_id, erased, touchpoints, derive(touchpoints, self.playbook, as_of))

    # -- erasure ----------------------------------------------------------------------

    def erase(self, record_ids: Sequence[UUID], erased_by: str) -> None:
        """Destroy the records' data keys and links at once, then record who erased each (nothing
        personal). A crash in between is finished by complete_erasures."""
        self.keyring.erase(record_ids, erased_by)
        for record_id in record_ids:
            self._record_erasure(record_id, erased_by)

    def linked_above(self, record_id: UUID) -> list[UUID]:
        """The records this one is linked to, directly or through others (its aggregates' links)."""
        found: list[UUID] = []
        at: UUID | None = record_id
        while at is not None:
            customer = self.customers.get_many([at]).get(at)
            at = UUID(customer.linked_to) if customer is not None and customer.linked_to else None
            if at is None or at in found or at == record_id:
                break
            found.append(at)
        return found

    def complete_erasures(self) -> int:
        """Record the erasure events that a crash left unrecorded; how many."""
        pending = self.keyring.pending_erasures()
        for erasure in pending:
            self._record_erasure(erasure.record_id, erasure.erased_by)
        return len(pending)

    def _record_erasure(self, record_id: UUID, erased_by: str) -> None:
        self._update(record_id, lambda customer: customer.erase(erased_by))
        self.keyring.erasure_recorded(record_id)

    def _update(self, record_id: UUID, command: Callable[[Customer], Any]) -> Any:
        """Run a command on one stored customer and store its events; retried against concurrent
        writers. None if the record has no aggregate (its first write never happened)."""
        with self._write_lock:
            for attempt in against(IntegrityError, self.max_attempts):
                with attempt:
                    customer = self.customers.get_many([record_id]).get(record_id)
                    if customer is None:
                        return None
                    try:
                        answer = command(customer)
                        self.events.put(customer.collect_events())
                    except BaseException:
                        self.customers.evict([record_id])
                        raise
                    self.customers.keep([customer])
                    return answer
        raise AssertionError("unreachable")  # pragma: no cover
