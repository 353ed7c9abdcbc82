"""The FastAPI application, built from settings in a factory."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from api import errors
from api.routes import customers, meta, segments, touchpoints
from journeys.settings import Settings
from projections.system import System


def create_app(settings: Settings | None = None, system: System | None = None) -> FastAPI:
    """The API; it owns the system it builds, and runs the projections if configured to."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = system is None
        app.state.system = system or System.build(settings or Settings())
        if owned and app.state.system.settings.run_projections:
            app.state.system.runner.start()
        try:
            yield
        finally:
            if owned:
                app.state.system.close()

    app = FastAPI(
        title="Journeys",
        summary="Where every customer stands in the buyer's, seller's and marketer's journeys",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (touchpoints, customers, segments, meta):
        app.include_router(module.router)
    return app
