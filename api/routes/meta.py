"""The active playbook and the service's health."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.auth import ANY_ROLE, READERS, allow
from api.deps import SystemDep
from api.responses import PlaybookOut
from api.schemas import ComponentOut, HealthOut
from journeys.storage.api_keys import Role
from projections.system import System

router = APIRouter(tags=["meta"])
log = logging.getLogger(__name__)


@router.get("/playbook", response_model=PlaybookOut, dependencies=[allow(*READERS)])
def playbook(system: SystemDep) -> dict[str, Any]:
    """The active playbook: stage models, evidence, consent and message rules, with its version and
    fingerprint, and the fingerprint of the one the live read models were derived under."""
    known = system.view.playbooks().get(system.playbook.fingerprint, {})
    return {
        "version": known.get("version"), "fingerprint": system.playbook.fingerprint,
        "read_models_derived_under": system.view.live_playbook, **system.playbook.model_dump(mode="json"),
    }


@router.get(
    "/metrics", dependencies=[allow(Role.operator)], response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(system: SystemDep) -> Response:
    """Operations metrics for Prometheus (journeys/metrics.py): touchpoints by outcome and intake,
    request latency per route, projection position and lag, stage transitions, dead letters."""
    try:
        system.runner.observe()
    except Exception as error:  # the database is away: the counters still answer
        log.warning("projection position unavailable for the metrics (%s)", type(error).__name__)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=HealthOut, dependencies=[allow(*ANY_ROLE)])
def health(system: SystemDep, response: Response) -> HealthOut:
    """The database, and how far the projections are behind the event log (503 naming what fails)."""
    backend = system.dialect.name
    try:
        system.view.query("SELECT 1")
        log_position = system.app.recorder.max_notification_id() or 0
        position = system.runner.position
        lag_seconds = _lag_seconds(system, position, log_position)
    except Exception as error:  # the database is away: say so, with 503
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        reason = f"{backend} unreachable ({type(error).__name__})"
        return HealthOut(
            status="unavailable", database=reason, components=[ComponentOut(name="database", ok=False, detail=reason)],
            projection_position=0, log_position=0, projection_lag=0, projection_lag_seconds=0, projection_error=None,
        )
    failed = system.runner.last_error
    lag = log_position - position
    projection = ComponentOut(
        name="projection", ok=failed is None,
        detail=failed or f"{lag} events ({lag_seconds:.1f} s) behind the event log",
    )
    if failed:
        response.status_code = 503
        response.headers["Retry-After"] = "2"
    return HealthOut(
        status="degraded" if failed else "ok",
        database=backend,
        components=[ComponentOut(name="database", ok=True, detail=backend), projection],
        projection_position=position,
        log_position=log_position,
        projection_lag=lag,
        projection_lag_seconds=lag_seconds,
        projection_error=failed,
    )


def _lag_seconds(system: System, position: int, log_position: int) -> float:
    """How long the oldest event the projection has not processed has waited."""
    if position >= log_position:
        return 0.0
    oldest = system.app.recorder.select_notifications(start=position + 1, limit=1)
    if not oldest:
        return 0.0
    written = system.app.mapper.to_domain_event(oldest[0]).timestamp  # type: ignore[attr-defined]  # every event has it
    return max(0.0, (datetime.now(UTC) - written).total_seconds())
