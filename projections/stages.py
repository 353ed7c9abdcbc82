"""The stage projection: turns a batch of stored events into view changes.

In-order touchpoints are folded into the stored stages; a touchpoint that
occurred before one already seen (a late or out-of-order delivery) makes the
record's stages and history be derived again from all its touchpoints, so the
view always equals `derive()` over the same touchpoints. Personal data is copied
as the events hold it, sealed: the projection never needs a data key.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence
from uuid import UUID

from eventsourcing.persistence import Tracking

from journeys.customer import Customer
from journeys.playbook import Playbook
from journeys.stages import fold, in_order, initial_stages, sort_key
from projections.view import CustomerChange, JourneyViewSQL, parse_ts


class StageProjection:
    """Keeps the journey view equal to the derivation of every record's touchpoints."""

    name = "journey_stages"

    def __init__(self, view: JourneyViewSQL, playbook: Playbook, sealed_key_of: Callable[[UUID], str | None]):
        self.view = view
        self.playbook = playbook
        # The sealed customer key is in a record's Registered event, which a batch boundary
        # may have put in the previous batch: then it is read from the event store.
        self.sealed_key_of = sealed_key_of
        # New transitions go to the view's outbox for publication; a rebuild re-derives
        # transitions that were published already, so it turns this off.
        self.outbox = True

    def process(self, events: Sequence[Any], tracking: Tracking) -> None:
        """Apply a batch of events and record `tracking` with them in one transaction."""
        by_record: dict[str, list[Any]] = defaultdict(list)
        registered: dict[str, str] = {}
        erasures = []
        for e in events:
            record_id = str(e.originator_id)
            if isinstance(e, Customer.TouchpointRecorded):
                by_record[record_id].append(e)
            elif isinstance(e, Customer.Registered):
                registered[record_id] = e.sealed_key
            elif isinstance(e, Customer.Erased):
                erasures.append((record_id, e.timestamp))
        current = self.view.load_stages(list(by_record))
        changes = [
            self._change(record_id, new, current.get(record_id), registered.get(record_id))
            for record_id, new in by_record.items()
        ]
        rows = [_row(e) for new in by_record.values() for e in new]
        self.view.write(rows, changes, tracking, erasures, publish_erasures=self.outbox)

    def _change(self, record_id: str, new: list[Any], current: Any, sealed_key: str | None) -> CustomerChange:
        new.sort(key=sort_key)
        if current is None and sealed_key is None:
            sealed_key = self.sealed_key_of(UUID(record_id))
        stages, count = current or (initial_stages(self.playbook), 0)
        if stages.last_key is None or sort_key(new[0]) > stages.last_key:
            derivation = fold(stages, new, self.playbook)
            return CustomerChange(
                record_id, sealed_key, derivation.stages, count + len(new), derivation.transitions, None,
                derivation.transitions if self.outbox else [],
            )
        # A late touchpoint: fold again from the stages just before it occurred, over the
        # touchpoints from then on; what came earlier cannot change.
        at = new[0].occurred_at
        before = self.view.stages_before(record_id, at, initial_stages(self.playbook))
        later = [StoredTouchpoint(row) for row in self.view.touchpoints_from(record_id, at)]
        derivation = fold(before, in_order([*later, *new]), self.playbook)
        seen = {_identity(t) for t in self.view.transitions_of(record_id, since=at)} if self.outbox else set()
        fresh = [t for t in derivation.transitions if _identity(t.__dict__) not in seen]
        return CustomerChange(
            record_id, sealed_key, derivation.stages, count + len(new), derivation.transitions, at,
            fresh if self.outbox else [],
        )


def _row(e: Any) -> dict[str, Any]:
    return {
        "record_id": str(e.originator_id), "touchpoint_id": e.touchpoint_id, "type": e.type,
        "channel": e.channel, "occurred_at": e.occurred_at, "recorded_at": e.timestamp, "source": e.source,
        "campaign": e.campaign, "deal_id": e.deal_id, "sealed": e.sealed,
    }


def _identity(transition: dict[str, Any]) -> tuple[Any, ...]:
    journey = transition["journey"]
    return (
        getattr(journey, "value", journey),
        transition["touchpoint_id"],
        transition["from_stage"],
        transition["to_stage"],
    )


class StoredTouchpoint:
    """A touchpoint row of the view, as the derivation reads it."""

    __slots__ = ("touchpoint_id", "type", "occurred_at")

    def __init__(self, row: dict[str, Any]):
        self.touchpoint_id = row["touchpoint_id"]
        self.type = row["type"]
        occurred = row["occurred_at"]
        self.occurred_at = parse_ts(occurred) if isinstance(occurred, str) else occurred
