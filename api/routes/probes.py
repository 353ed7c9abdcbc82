"""Liveness and readiness for load balancers and orchestrators: no key, no detail, no data.

A probe must not carry a secret in its manifest, so these answer without a key; they
say only yes or no. What is wrong is in /health, behind a key.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from api.deps import SystemDep

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)


@router.get("/livez")
def livez() -> Response:
    """The process answers."""
    return Response("ok\n", media_type="text/plain")


@router.get("/readyz")
def readyz(system: SystemDep) -> Response:
    """200 when the database answers and the projection this process keeps is running; else 503."""
    try:
        system.view.query("SELECT 1")
        ready = system.runner.stopped is None
    except Exception as error:  # the database is away (or the breaker says so): not ready
        log.info("not ready: %s", type(error).__name__)
        ready = False
    if ready:
        return Response("ready\n", media_type="text/plain")
    return Response("not ready\n", status_code=503, media_type="text/plain", headers={"Retry-After": "2"})
