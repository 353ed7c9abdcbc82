"""Every error answer, in one place: a JSON body a person can act on, never the input echoed."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError
from journeys.application import ConcurrencyError, CustomerNotFoundError
from journeys.storage.database import UNAVAILABLE

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 50


class ErrorOut(BaseModel):
    detail: str


class NotFoundError(Exception):
    """Nothing is recorded under the id asked for."""


class NotCaughtUpError(Exception):
    """The read model has not yet reached the position the client asked for."""


class BeyondTheLogError(Exception):
    """A read asked to wait for a write position no write has reached (409: the log is shorter)."""


class BadQueryError(Exception):
    """A query parameter that is well-formed but names nothing we know."""

    def __init__(self, parameter: str, reason: str, location: str = "query"):
        super().__init__(reason)
        self.parameter = parameter
        self.reason = reason
        self.location = location


class BadBodyError(Exception):
    """A request body that cannot be read as what the route takes (400); the message says why."""


def error_response(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Answers any route may give, documented in the OpenAPI document.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error_response("the body is not valid JSON, or a header is malformed"),
    401: error_response("no API key, or an unknown or revoked one"),
    403: error_response("the API key's role may not do this"),
    409: error_response("the request conflicts with what is stored (e.g. a min_position beyond the log)"),
    429: error_response("the API key's rate limit is reached; see Retry-After"),
    413: error_response("the request body is over the size limit"),
    503: error_response("the database or the read model is unavailable or behind; see Retry-After"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: error_response("no such customer")}


def _json(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail, **extra}, headers=headers)


def _validation_detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        shown.append({"loc": [], "msg": f"and {len(errors) - MAX_REPORTED_ERRORS} more errors", "type": "too_many_errors"})
    return shown


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            reason = next(e for e in errors if e.get("type") == "json_invalid")
            return _json(400, f"the body is not valid JSON: {reason.get('ctx', {}).get('error', 'malformed')}")
        return JSONResponse(status_code=422, content={"detail": _validation_detail(errors)})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail
        if error.status_code == 400 and detail == "There was an error parsing the body":
            # FastAPI's words when json.loads itself fails, e.g. on nesting deeper than Python recurses.
            detail = "the body could not be read as JSON: it is malformed or nested far too deeply"
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Starlette names only the first route of the path's methods
            headers["Allow"] = allowed_methods(request)
        return _json(error.status_code, detail, headers)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, __: RecursionError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": ["body"], "msg": "the JSON is nested too deeply to be read", "type": "too_deep"}
        ]})

    @app.exception_handler(AuthError)
    async def _auth(_: Request, error: AuthError) -> JSONResponse:
        return _json(error.status, error.detail, error.headers)

    @app.exception_handler(CustomerNotFoundError)
    async def _not_found(_: Request, error: CustomerNotFoundError) -> JSONResponse:
        return _json(404, str(error))

    @app.exception_handler(NotFoundError)
    async def _nothing(_: Request, error: NotFoundError) -> JSONResponse:
        return _json(404, str(error))

    @app.exception_handler(ConcurrencyError)
    async def _contended(_: Request, error: ConcurrencyError) -> JSONResponse:
        return _json(503, str(error), {"Retry-After": "1"})

    @app.exception_handler(NotCaughtUpError)
    async def _behind(_: Request, error: NotCaughtUpError) -> JSONResponse:
        return _json(503, str(error), {"Retry-After": "1"})

    @app.exception_handler(BeyondTheLogError)
    async def _beyond(_: Request, error: BeyondTheLogError) -> JSONResponse:
        return _json(409, str(error))

    @app.exception_handler(BadBodyError)
    async def _bad_body(_: Request, error: BadBodyError) -> JSONResponse:
        return _json(400, str(error))

    @app.exception_handler(BadQueryError)
    async def _bad_query(_: Request, error: BadQueryError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": [error.location, error.parameter], "msg": error.reason, "type": "value_error"}
        ]})

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # The type only: a message may hold what the client sent.
        log.error("unexpected %s on %s %s", type(error).__name__, request.method, route_of(request))
        return _json(500, "internal error; it has been logged")


def allowed_methods(request: Request) -> str:
    """Every method some route answers at this path (for a 405's Allow header)."""
    path = request.scope["path"]
    methods = {m for route in request.app.state.api_routes if route.path_regex.match(path) for m in route.methods}
    return ", ".join(sorted(methods))


def route_of(request: Request) -> str:
    """The route's template (/customers/{customer_id}/stages): a path may hold personal data."""
    route = request.scope.get("route")
    return getattr(route, "path", "(no route)")


async def _database_down(request: Request, error: Exception) -> JSONResponse:
    cause = error.__cause__  # what the driver raised, when a layer wrapped it (e.g. LockNotAvailable)
    log.warning("database unavailable on %s %s: %s%s", request.method, route_of(request), type(error).__name__,
                f" ({type(cause).__name__})" if cause is not None else "")
    return _json(
        503,
        "the database is unavailable; retry shortly (a retried touchpoint is recorded once: "
        "touchpoints are idempotent)",
        {"Retry-After": "2"},
    )
