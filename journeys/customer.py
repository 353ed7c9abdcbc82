"""The customer aggregate: every touchpoint is an immutable event on it.

Its id is the random record id the keyring gave the customer key. Personal data
(the customer key, the actor, the properties) is in the events only sealed under
the customer's data key; the rest (type, channel, times, source, campaign, deal)
is in clear, so stages, counts and an auditor's timeline survive an erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from journeys.crypto import ERASED, DataKey, UnreadableError
from journeys.touchpoint import Touchpoint

PERSONAL_FIELDS = ("customer_id", "actor", "properties")


class Outcome(str, Enum):
    recorded = "recorded"
    duplicate = "duplicate"
    conflict = "conflict"
    invalid = "invalid"


class TouchpointConflictError(Exception):
    """The same touchpoint id was recorded before with different content."""

    def __init__(self, customer_key: str, touchpoint_id: str):
        super().__init__(
            "this touchpoint_id was already recorded with different content (for this customer); "
            "touchpoints are immutable"
        )
        self.customer_key = customer_key
        self.touchpoint_id = touchpoint_id


@dataclass(frozen=True)
class IdentityLink:
    """A link asked for: the anonymous (or previous) customer key is the known one's."""

    message_id: str
    anonymous_key: str
    user_key: str
    call: str  # identify or alias


class IdentityConflictError(Exception):
    """A link that cannot be made: says why."""


class CustomerErasedError(Exception):
    """The record was erased; a touchpoint for the same key belongs to a new record."""


def key_context(record_id: UUID) -> str:
    return f"{record_id}/customer_key"


def touchpoint_context(record_id: UUID, touchpoint_id: str) -> str:
    return f"{record_id}/touchpoint/{touchpoint_id}"


class Customer(Aggregate):
    """A party on the buying side: one record of the publisher's customer key."""

    # The events, declared as classes (as the eventsourcing examples do) so that type checkers see
    # them; their names are their stored topics (journeys.customer:Customer.<name>).
    class Registered(Aggregate.Created):
        record_id: UUID
        sealed_key: str

    class TouchpointRecorded(Aggregate.Event):
        touchpoint_id: str
        type: str
        channel: str
        occurred_at: datetime
        source: str
        campaign: str | None
        deal_id: str | None
        account_id: str | None
        case_id: str | None
        buying_role: str | None
        criteria: list[str]
        sealed: str
        fingerprint: str

    class IdentityLinked(Aggregate.Event):
        to_record: str
        message_id: str
        call: str

    class IdentityUnlinked(Aggregate.Event):
        unlinked_by: str

    class Erased(Aggregate.Event):
        erased_by: str

    _linked_to: str | None  # set by the first link (snapshots from before links lack it)

    @staticmethod
    def create_id(record_id: UUID, sealed_key: str) -> UUID:
        return record_id

    def __init__(self, record_id: UUID, sealed_key: str):
        # Small on purpose: a snapshot of it is cheap to load. Which touchpoints are stored
        # is in the event store's touchpoint index, looked up per batch (see recorders.py).
        self.sealed_key = sealed_key
        self.erased = False

    @classmethod
    def register(cls, record_id: UUID, customer_key: str, key: DataKey) -> Customer:
        return cls(record_id=record_id, sealed_key=key.seal(customer_key, key_context(record_id)))

    def record(self, touchpoint: Touchpoint, key: DataKey, known: str | None) -> tuple[Outcome, str]:
        """Record a touchpoint once; the same id again is a duplicate or a conflict.

        `known` is the fingerprint already stored (or pending) under this touchpoint id;
        the touchpoint's own fingerprint is returned with the outcome.
        """
        if self.erased:
            raise CustomerErasedError(str(self.id))
        content = touchpoint.content()
        fingerprint = key.fingerprint(content)
        if known == fingerprint:
            return Outcome.duplicate, fingerprint
        if known is not None:
            raise TouchpointConflictError(touchpoint.customer_id, touchpoint.touchpoint_id)
        personal = {name: content[name] for name in PERSONAL_FIELDS}
        self._touchpoint_recorded(
            touchpoint_id=touchpoint.touchpoint_id,
            type=touchpoint.type,
            channel=touchpoint.channel,
            occurred_at=touchpoint.occurred_at,
            source=touchpoint.source,
            campaign=touchpoint.campaign,
            deal_id=touchpoint.deal_id,
            account_id=touchpoint.account_id,
            case_id=touchpoint.case_id,
            buying_role=touchpoint.buying_role,
            criteria=list(touchpoint.criteria),
            sealed=key.seal(personal, touchpoint_context(self.id, touchpoint.touchpoint_id)),
            fingerprint=fingerprint,
        )
        return Outcome.recorded, fingerprint

    @event(TouchpointRecorded)
    def _touchpoint_recorded(
        self,
        touchpoint_id: str,
        type: str,  # noqa: A002 - the touchpoint schema's own word
        channel: str,
        occurred_at: datetime,
        source: str,
        campaign: str | None,
        deal_id: str | None,
        account_id: str | None,
        case_id: str | None,
        buying_role: str | None,
        criteria: list[str],
        sealed: str,
        fingerprint: str,
    ) -> None:
        pass  # nothing the aggregate's rules need: the touchpoint index answers for duplicates

    # -- identity links ---------------------------------------------------------------
    # An anonymous visitor's record is linked to a known customer's (Segment's identify
    # with both ids, or alias): the event is on the visitor's record, which is linked to at
    # most one other at a time. The projection derives the linked records' stages as one
    # customer's (projections/stages.py); an unlink makes them two again.

    @property
    def linked_to(self) -> str | None:
        return getattr(self, "_linked_to", None)  # snapshots from before links lack it

    def link(self, to_record: UUID, message_id: str, call: str) -> Outcome:
        """Link this record to another; the same link again is a duplicate, another a conflict."""
        if self.linked_to == str(to_record):
            return Outcome.duplicate
        if self.linked_to is not None:
            raise IdentityConflictError("it is linked to another customer already; unlink it first")
        self._identity_linked(to_record=str(to_record), message_id=message_id, call=call)
        return Outcome.recorded

    @event(IdentityLinked)
    def _identity_linked(self, to_record: str, message_id: str, call: str) -> None:
        self._linked_to = to_record

    def unlink(self, unlinked_by: str) -> str | None:
        """Undo the link (who asked: an API key's or operator's name); the record it was linked to."""
        was = self.linked_to
        if was is not None:
            self._identity_unlinked(unlinked_by=unlinked_by)
        return was

    @event(IdentityUnlinked)
    def _identity_unlinked(self, unlinked_by: str) -> None:
        self._linked_to = None

    def erase(self, erased_by: str) -> None:
        """Record that the data key was destroyed: who asked (an API key's name), nothing personal."""
        if not self.erased:
            self._erased(erased_by=erased_by)

    @event(Erased)
    def _erased(self, erased_by: str) -> None:
        self.erased = True


def open_personal(sealed: str | None, record_id: UUID, touchpoint_id: str, key: DataKey | None) -> dict[str, Any]:
    """A touchpoint's personal fields, or 'erased' in their place once the data key is gone."""
    if sealed is None or key is None:
        return {"customer_id": ERASED, "actor": ERASED, "properties": ERASED}
    try:
        return key.open(sealed, touchpoint_context(record_id, touchpoint_id))
    except UnreadableError:
        return {"customer_id": ERASED, "actor": ERASED, "properties": ERASED}


def touchpoint_from_event(recorded: Customer.TouchpointRecorded, key: DataKey | None) -> RecordedTouchpoint:
    """The touchpoint a stored event holds, with when it was recorded, its personal data opened."""
    return RecordedTouchpoint.model_construct(
        touchpoint_id=recorded.touchpoint_id,
        type=recorded.type,
        channel=recorded.channel,  # type: ignore[arg-type]  # as validated ones hold it (use_enum_values)
        occurred_at=recorded.occurred_at,
        source=recorded.source,
        campaign=recorded.campaign,
        deal_id=recorded.deal_id,
        account_id=recorded.account_id,
        case_id=recorded.case_id,
        buying_role=recorded.buying_role,
        criteria=recorded.criteria,
        recorded_at=recorded.timestamp,
        record_id=recorded.originator_id,
        **open_personal(recorded.sealed, recorded.originator_id, recorded.touchpoint_id, key),
    )


class RecordedTouchpoint(Touchpoint):
    """A touchpoint as stored: the publisher's content plus when and in which record we stored it."""

    recorded_at: datetime
    record_id: UUID
