"""Where a customer stands, and how they got there."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator

from api.auth import READERS, allow
from api.deps import SystemDep
from api.errors import NOT_FOUND, BadQueryError, NotCaughtUpError
from api.keys import Role
from api.schemas import HistoryOut, StagesOut, TouchpointOut, TransitionOut
from journeys.application import CustomerNotFoundError
from journeys.touchpoint import UtcDatetime, check_text
from projections.system import System

router = APIRouter(prefix="/customers", tags=["customers"], responses=NOT_FOUND)

CustomerKey = Annotated[str, Path(min_length=1, max_length=200), AfterValidator(check_text)]
MinPosition = Annotated[
    int | None,
    Query(ge=0, description="wait until the read model has processed this write position"),
]


def caught_up(system: System, min_position: int | None) -> int:
    """The read model's position, after waiting for `min_position` if asked."""
    if min_position is not None and min_position > (last := system.app.recorder.max_notification_id() or 0):
        raise BadQueryError(
            "min_position", f"{min_position} is beyond the last write's position ({last}); "
            "pass the position a write answered with"
        )
    if not system.runner.wait(min_position, system.settings.read_your_writes_timeout):
        raise NotCaughtUpError(
            f"the read model has not reached position {min_position} yet; retry shortly"
        )
    return system.runner.position


@router.get("/{customer_id}/stages", response_model=StagesOut, dependencies=[allow(*READERS)])
def stages(
    customer_id: CustomerKey,
    system: SystemDep,
    as_of: Annotated[UtcDatetime | None, Query(description="answer as of this past moment, by replay")] = None,
    min_position: MinPosition = None,
) -> StagesOut:
    """The customer's buyer, seller and awareness stages, and the next message to send."""
    position = caught_up(system, min_position)
    if as_of is not None:
        return _replayed(system, customer_id, as_of, position)
    found = system.view.customer(customer_id)
    if found is None:
        raise CustomerNotFoundError(customer_id)
    sent = system.view.sent_message_ids(customer_id)
    return StagesOut.of(customer_id, found["stages"], system.playbook, sent, position)


def _replayed(system: System, customer_id: str, as_of: datetime, position: int) -> StagesOut:
    replay = system.app.replay(customer_id, as_of=as_of)
    sent = {
        str(t.properties["message_id"])
        for t in replay.derivation.touchpoints
        if t.type == "message_sent" and "message_id" in t.properties
    }
    return StagesOut.of(customer_id, replay.derivation.stages, system.playbook, sent, position, as_of)


@router.get("/{customer_id}/history", response_model=HistoryOut, dependencies=[allow(Role.auditor)])
def history(customer_id: CustomerKey, system: SystemDep, min_position: MinPosition = None) -> HistoryOut:
    """The customer's touchpoints in occurred order, and the stage transitions they caused."""
    position = caught_up(system, min_position)
    touchpoints = system.view.touchpoints_of(customer_id)
    if not touchpoints:
        raise CustomerNotFoundError(customer_id)
    return HistoryOut(
        customer_id=customer_id,
        touchpoints=[TouchpointOut(**t) for t in touchpoints],
        transitions=[TransitionOut(**t) for t in system.view.transitions_of(customer_id)],
        position=position,
    )
