"""Where a customer stands, and how they got there."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AfterValidator

from api.auth import READERS, allow, authenticate
from api.deps import SystemDep, WholeNumber
from api.errors import NOT_FOUND, BadQueryError, BeyondTheLogError, NotCaughtUpError
from api.responses import CustomerTimelineOut
from api.schemas import (
    ErasureOut,
    HistoryOut,
    MembershipOut,
    PlaybookRef,
    RecommendationOut,
    StagesOut,
    TouchpointOut,
    TransitionOut,
)
from journeys.application import CustomerNotFoundError
from journeys.playbook import Scope
from journeys.storage.api_keys import ApiKey, Role
from journeys.touchpoint import KEY_PATTERN, UtcDatetime, check_key
from projections import history as histories
from projections import picture as pictures
from projections.history import CursorError, Window
from projections.system import System
from projections.timeline import timeline

router = APIRouter(prefix="/customers", tags=["customers"], responses=NOT_FOUND)

CustomerKey = Annotated[
    str, Path(min_length=1, max_length=200, json_schema_extra={"pattern": KEY_PATTERN}), AfterValidator(check_key),
]
MinPosition = Annotated[
    int | None,
    Query(ge=0, description="wait until the read model has processed this write position"), WholeNumber,
]


AsOf = Annotated[UtcDatetime | None, Query(description="answer as of this past moment (by occurrence), by replay")]
KnownAt = Annotated[
    UtcDatetime | None,
    Query(description="answer as it was known at this moment: only touchpoints recorded by then count"),
]
After = Annotated[str | None, Query(max_length=2000, description="the next_cursor of the page before")]
Limit = Annotated[int, Query(ge=1, le=1000, description="touchpoints per page"), WholeNumber]
TimelineLimit = Annotated[int, Query(ge=1, le=5000, description="how many of the latest touchpoints"), WholeNumber]


def caught_up(system: System, min_position: int | None) -> int:
    """The read model's position, after waiting for `min_position` if asked."""
    if min_position is not None and min_position > (last := system.app.recorder.max_notification_id() or 0):
        raise BeyondTheLogError(
            f"min_position is beyond the last write's position ({last}); pass the position a write answered with"
        )
    if not system.runner.wait(min_position, system.settings.read_your_writes_timeout):
        raise NotCaughtUpError(
            f"the read model has not reached position {min_position} yet; retry shortly"
        )
    return system.runner.position


def record_of(system: System, customer_key: str) -> str:
    """The customer's current record id; 404 for keys never seen, or erased."""
    record_id = system.keyring.find(customer_key)
    if record_id is None:
        raise CustomerNotFoundError(customer_key)
    return str(record_id)


def customer_of(system: System, customer_key: str) -> str:
    """The record whose stages answer for the key: its own, or, when it is linked to others
    (identity stitching), the root of the linked records, so either key finds the customer."""
    record_id = record_of(system, customer_key)
    return system.view.roots([record_id])[record_id]


@router.get("/{customer_id}/stages", response_model=StagesOut, dependencies=[allow(*READERS)])
def stages(
    customer_id: CustomerKey,
    system: SystemDep,
    as_of: AsOf = None,
    known_at: KnownAt = None,
    min_position: MinPosition = None,
) -> StagesOut:
    """The customer's buyer, seller and awareness stages, and the next message to send."""
    position = caught_up(system, min_position)
    if as_of is not None or known_at is not None:
        return _replayed(system, customer_id, as_of, known_at, position)
    record_id = customer_of(system, customer_id)
    found = system.view.customer(record_id)
    if found is None:  # recorded, but not yet projected
        raise CustomerNotFoundError(customer_id)
    return StagesOut.of(customer_id, record_id, pictures.whole(system, record_id, found["stages"]), system.playbook,
                        position, derived_by(system, system.view.live_playbook))


@router.get("/{customer_id}/timeline", response_model=CustomerTimelineOut, dependencies=[allow(*READERS)])
def customer_timeline(customer_id: CustomerKey, system: SystemDep, limit: TimelineLimit = 500) -> dict[str, Any]:
    """The customer's latest touchpoints (type, channel, campaign, time: no personal data) and
    stage transitions per journey: the dashboard's swim lanes; the accounts, deals and cases the
    customer is in, and the recommendation."""
    record_id = customer_of(system, customer_id)
    found = timeline(system, Scope.customer, record_id, limit)
    row = system.view.customer(record_id)
    if row is None:
        return {"customer_id": customer_id, **found, "memberships": [], "recommendation": None}
    whole = pictures.whole(system, record_id, row["stages"])
    return {
        "customer_id": customer_id, **found,
        "memberships": [MembershipOut.of(m, system.playbook).model_dump(mode="json") for m in whole.picture.memberships],
        "recommendation": RecommendationOut.of(whole.recommendation).model_dump(mode="json"),
    }


def _replayed(
    system: System, customer_id: str, as_of: datetime | None, known_at: datetime | None, position: int
) -> StagesOut:
    replay = system.app.replay(customer_id, as_of=as_of, known_at=known_at)
    whole = pictures.replayed(system, replay.touchpoints, replay.derivation.stages, as_of, known_at)
    return StagesOut.of(
        customer_id, str(replay.record_id), whole, system.playbook, position,
        derived_by(system, system.playbook.fingerprint), as_of,
    )


def derived_by(system: System, fingerprint: str | None) -> PlaybookRef:
    """Name, version and fingerprint of the playbook with this fingerprint (None: not recorded)."""
    known = system.view.playbooks().get(fingerprint or "")
    if known is None:
        return PlaybookRef(name=system.playbook.name, version=None, fingerprint=fingerprint)
    return PlaybookRef(name=known["name"], version=known["version"], fingerprint=fingerprint)


@router.get("/{customer_id}/history", response_model=HistoryOut, dependencies=[allow(Role.auditor)])
def history(
    customer_id: CustomerKey, system: SystemDep, after: After = None, limit: Limit = 1000,
    as_of: AsOf = None, known_at: KnownAt = None, min_position: MinPosition = None,
) -> HistoryOut:
    """The customer's touchpoints in occurred order, a page at a time, and the stage transitions they caused
    (as they are now, or as of a moment and as known at a moment)."""
    position = caught_up(system, min_position)
    return history_of(system, record_of(system, customer_id), customer_id, position, after, limit, Window(as_of, known_at))


def history_of(
    system: System, record_id: str, label: str, position: int,
    after: str | None = None, limit: int = 1000, window: Window = Window(),
) -> HistoryOut:
    try:
        found = histories.history(system, Scope.customer, record_id, window, after, limit)
    except CursorError as error:
        raise BadQueryError("after", str(error)) from None
    if not found["summary"]["touchpoint_count"]:
        raise CustomerNotFoundError(label)
    customer = system.view.customer(record_id)
    return HistoryOut(
        customer_id=found["summary"]["contacts"][0]["customer_id"],
        record_id=record_id,
        erased_at=customer["erased_at"] if customer else None,
        touchpoints=[TouchpointOut(**t) for t in found["touchpoints"]],
        transitions=[TransitionOut(**c) for t in found["touchpoints"] for c in t["transitions"]],
        next_cursor=found["next_cursor"],
        revisions=found["revisions"],
        as_of=window.as_of,
        known_at=window.known_at,
        position=position,
    )


@router.delete("/{customer_id}", response_model=ErasureOut, dependencies=[allow()])
def erase(customer_id: CustomerKey, system: SystemDep, key: Annotated[ApiKey, Depends(authenticate)]) -> ErasureOut:
    """Erase a person's personal data everywhere (crypto-shredding): the customer's record and every
    record linked to it by identity stitching; stages and counts stay, anonymous."""
    erased = system.erase(customer_id, erased_by=f"api key {key.name}")
    also = (f"; so are the {len(erased.linked)} records linked to it (the same person's other ids), "
            "which no longer answer by their keys either") if erased.linked else ""
    return ErasureOut(
        record_id=str(erased.record_id),
        linked_records=[str(r) for r in erased.linked],
        erased_by=f"api key {key.name}",
        detail="the customer's data key is destroyed: its personal data cannot be read anywhere, and it no "
        f"longer answers by key{also}; a tombstone goes to the stage-change topic for each",
    )
