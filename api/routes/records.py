"""Records by our id, for auditors: the history of erased customers stays readable, anonymous."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from api.auth import allow
from api.deps import SystemDep
from api.errors import NOT_FOUND
from api.routes.customers import MinPosition, caught_up, history_of
from api.schemas import HistoryOut
from journeys.storage.api_keys import Role

router = APIRouter(prefix="/records", tags=["audit"], responses=NOT_FOUND)


@router.get("/{record_id}/history", response_model=HistoryOut, dependencies=[allow(Role.auditor)])
def record_history(record_id: UUID, system: SystemDep, min_position: MinPosition = None) -> HistoryOut:
    """A record's touchpoints and transitions; 'erased' in place of personal data after an erasure."""
    position = caught_up(system, min_position)
    return history_of(system, str(record_id), str(record_id), position)
