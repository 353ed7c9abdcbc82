"""The FastAPI application, built from settings in a factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from api import errors, openapi
from api.access_log import AccessLogMiddleware
from api.auth import RateLimiter
from api.cors import SegmentCorsMiddleware
from api.limits import BodyLimitMiddleware
from api.routes import (
    analytics,
    audit,
    campaigns,
    cloudevents,
    customers,
    dashboard,
    instances,
    keys,
    meta,
    probes,
    records,
    segment,
    segments,
    touchpoints,
)
from journeys.settings import Settings
from journeys.storage.api_keys import KeyStore
from projections.system import System

ROUTERS = tuple(
    m.router
    for m in (touchpoints, cloudevents, segment, customers, instances, records, audit, segments, analytics, campaigns, keys, meta)
)


def create_app(settings: Settings | None = None, system: System | None = None) -> FastAPI:
    """The API; it owns the system it builds, and runs the projections if configured to."""
    settings = settings or (system.settings if system else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = system is None
        app.state.system = system or System.build(settings)
        app.state.keys = KeyStore(app.state.system.view, settings.key_cache_seconds)
        app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
        if owned:  # projects, or (when another process projects) follows the live read models
            app.state.system.runner.start(project=app.state.system.settings.run_projections)
        try:
            yield
        finally:
            if owned:
                app.state.system.close()

    # The docs pages' scripts and styles are served from the fastapi-offline package, not a CDN.
    app = FastAPIOffline(
        title="Journeys",
        summary="Where every customer stands in the buyer's, seller's and marketer's journeys",
        version="0.1.0",
        lifespan=lifespan,
        responses=errors.COMMON_RESPONSES,
    )
    errors.install(app)
    openapi.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.state.api_routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    app.include_router(dashboard.router)  # the page and its scripts only: no data, so no key (see its module)
    app.include_router(probes.router)  # yes or no only, so no key: a probe carries no secret
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.segment_cors_origins:  # preflights are answered before the body limit and the keys
        app.add_middleware(SegmentCorsMiddleware, origins=settings.segment_cors_origins)
    app.add_middleware(AccessLogMiddleware)  # outermost: it sees every answer, 413s included
    return app
