"""The stage projection: turns a batch of recorded touchpoints into view changes.

In-order touchpoints are folded into the stored stages; a touchpoint that
occurred before one already seen (a late or out-of-order delivery) makes the
customer's stages and history be derived again from all its touchpoints, so
the view always equals `derive()` over the same touchpoints.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

from eventsourcing.persistence import Tracking

from journeys.customer import Customer, touchpoint_from_event
from journeys.playbook import Playbook
from journeys.stages import derive, fold, initial_stages, sort_key
from projections.view import CustomerChange, JourneyViewSQL


class StageProjection:
    """Keeps the journey view equal to the derivation of every customer's touchpoints."""

    name = "journey_stages"

    def __init__(self, view: JourneyViewSQL, playbook: Playbook):
        self.view = view
        self.playbook = playbook
        # New transitions go to the view's outbox for publication; a rebuild re-derives
        # transitions that were published already, so it turns this off.
        self.outbox = True

    def process(self, events: Sequence[Any], tracking: Tracking) -> None:
        """Apply a batch of events and record `tracking` with them in one transaction."""
        recorded = [
            touchpoint_from_event(e) for e in events if isinstance(e, Customer.TouchpointRecorded)
        ]
        by_customer: dict[str, list[Any]] = defaultdict(list)
        for touchpoint in recorded:
            by_customer[touchpoint.customer_id].append(touchpoint)
        current = self.view.load_stages(list(by_customer))
        changes = [
            self._change(customer_id, new, current.get(customer_id))
            for customer_id, new in by_customer.items()
        ]
        rows = [t.model_dump() for t in recorded]
        self.view.write(rows, changes, tracking)

    def _change(self, customer_id: str, new: list[Any], current: Any) -> CustomerChange:
        new.sort(key=sort_key)
        stages, count = current or (initial_stages(self.playbook), 0)
        if stages.last_key is None or sort_key(new[0]) > stages.last_key:
            derivation = fold(stages, new, self.playbook)
            return CustomerChange(
                customer_id, derivation.stages, count + len(new), derivation.transitions, False,
                derivation.transitions if self.outbox else [],
            )
        stored = [_Stored(row) for row in self.view.touchpoints_of(customer_id)]
        derivation = derive([*stored, *new], self.playbook)
        before = {_identity(t) for t in self.view.transitions_of(customer_id)} if self.outbox else set()
        fresh = [t for t in derivation.transitions if _identity(t.__dict__) not in before]
        return CustomerChange(
            customer_id,
            derivation.stages,
            len(derivation.touchpoints),
            derivation.transitions,
            True,
            fresh if self.outbox else [],
        )


def _identity(transition: dict[str, Any]) -> tuple[Any, ...]:
    journey = transition["journey"]
    return (
        getattr(journey, "value", journey),
        transition["touchpoint_id"],
        transition["from_stage"],
        transition["to_stage"],
    )


class _Stored:
    """A touchpoint row of the view, as the derivation reads it."""

    __slots__ = ("touchpoint_id", "type", "occurred_at")

    def __init__(self, row: dict[str, Any]):
        self.touchpoint_id = row["touchpoint_id"]
        self.type = row["type"]
        self.occurred_at = row["occurred_at"]
