"""The customer aggregate: every touchpoint is an immutable event on it."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from journeys.touchpoint import Touchpoint

CUSTOMER_NAMESPACE = uuid5(NAMESPACE_URL, "urn:journeys:customer")


@lru_cache(maxsize=65_536)
def customer_uuid(customer_key: str) -> UUID:
    """Our id for the publisher's customer key: the same key, the same id, everywhere."""
    return uuid5(CUSTOMER_NAMESPACE, customer_key)


class Outcome(str, Enum):
    recorded = "recorded"
    duplicate = "duplicate"
    conflict = "conflict"
    invalid = "invalid"


class TouchpointConflictError(Exception):
    """The same touchpoint id was recorded before with different content."""

    def __init__(self, customer_key: str, touchpoint_id: str):
        super().__init__(
            f"touchpoint {touchpoint_id!r} of customer {customer_key!r} was already "
            "recorded with different content; touchpoints are immutable"
        )
        self.customer_key = customer_key
        self.touchpoint_id = touchpoint_id


class Customer(Aggregate):
    """A party on the buying side, identified by the publisher's key."""

    @staticmethod
    def create_id(customer_key: str) -> UUID:
        return customer_uuid(customer_key)

    @event("Registered")
    def __init__(self, customer_key: str):
        self.customer_key = customer_key
        self.fingerprints: dict[str, str] = {}

    def record(self, touchpoint: Touchpoint) -> Outcome:
        """Record a touchpoint once; the same id again is a duplicate or a conflict."""
        fingerprint = touchpoint.fingerprint()
        known = self.fingerprints.get(touchpoint.touchpoint_id)
        if known == fingerprint:
            return Outcome.duplicate
        if known is not None:
            raise TouchpointConflictError(self.customer_key, touchpoint.touchpoint_id)
        self._touchpoint_recorded(fingerprint=fingerprint, **touchpoint.model_dump())
        return Outcome.recorded

    @event("TouchpointRecorded")
    def _touchpoint_recorded(
        self,
        touchpoint_id: str,
        customer_id: str,
        type: str,  # noqa: A002 - the touchpoint schema's own word
        channel: str,
        occurred_at: datetime,
        source: str,
        actor: str | None,
        campaign: str | None,
        deal_id: str | None,
        properties: dict[str, Any],
        fingerprint: str,
    ) -> None:
        self.fingerprints[touchpoint_id] = fingerprint


def touchpoint_from_event(recorded: Customer.TouchpointRecorded) -> RecordedTouchpoint:
    """The touchpoint a stored event holds, with when it was recorded."""
    return RecordedTouchpoint.model_construct(
        touchpoint_id=recorded.touchpoint_id,
        customer_id=recorded.customer_id,
        type=recorded.type,
        channel=recorded.channel,
        occurred_at=recorded.occurred_at,
        source=recorded.source,
        actor=recorded.actor,
        campaign=recorded.campaign,
        deal_id=recorded.deal_id,
        properties=recorded.properties,
        recorded_at=recorded.timestamp,
    )


class RecordedTouchpoint(Touchpoint):
    """A touchpoint as stored: the publisher's content plus when we recorded it."""

    recorded_at: datetime
