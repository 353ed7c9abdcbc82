"""Domain errors mapped to HTTP status, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from journeys.application import ConcurrencyError, CustomerNotFoundError


class NotCaughtUpError(Exception):
    """The read model has not yet reached the position the client asked for."""


class BadQueryError(Exception):
    """A query parameter that is well-formed but names nothing we know."""

    def __init__(self, parameter: str, reason: str):
        super().__init__(reason)
        self.parameter = parameter
        self.reason = reason


def install(app: FastAPI) -> None:
    @app.exception_handler(CustomerNotFoundError)
    async def _not_found(_: Request, error: CustomerNotFoundError) -> JSONResponse:
        return JSONResponse(
            status_code=404,
            content={"detail": str(error), "customer_id": error.customer_key},
        )

    @app.exception_handler(ConcurrencyError)
    async def _contended(_: Request, error: ConcurrencyError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "1"})

    @app.exception_handler(NotCaughtUpError)
    async def _behind(_: Request, error: NotCaughtUpError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "1"})

    @app.exception_handler(BadQueryError)
    async def _bad_query(_: Request, error: BadQueryError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={"detail": [{"loc": ["query", error.parameter], "msg": error.reason}]},
        )
