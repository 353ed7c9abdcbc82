"""The active playbook and the service's health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.auth import ANY_ROLE, READERS, allow
from api.deps import SystemDep
from api.schemas import HealthOut

router = APIRouter(tags=["meta"])


@router.get("/playbook", dependencies=[allow(*READERS)])
def playbook(system: SystemDep) -> dict[str, Any]:
    """The active playbook: stage models, evidence and message catalogue."""
    return system.playbook.model_dump(mode="json")


@router.get("/health", response_model=HealthOut, dependencies=[allow(*ANY_ROLE)])
def health(system: SystemDep, response: Response) -> HealthOut:
    """Database reachable, and how far the projections are behind the event log."""
    try:
        log_position = system.app.recorder.max_notification_id() or 0
        position = system.runner.position
    except Exception as error:  # the database is down: say so, with 503
        response.status_code = 503
        return HealthOut(
            status="unavailable", database=f"{type(error).__name__}: {error}",
            projection_position=0, log_position=0, projection_lag=0, projection_error=None,
        )
    error = system.runner.last_error
    if error:
        response.status_code = 503
    return HealthOut(
        status="degraded" if error else "ok",
        database="sqlite" if system.settings.is_sqlite else "postgresql",
        projection_position=position,
        log_position=log_position,
        projection_lag=log_position - position,
        projection_error=error,
    )
