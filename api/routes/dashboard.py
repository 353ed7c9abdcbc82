"""The marketers' dashboard: a page and its scripts, shipped in this package (no CDN, no build
step). The page holds no data: its script asks for a marketer's API key and calls the API with
it, so these routes need no key while every figure still does."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from api.errors import NotFoundError

router = APIRouter(include_in_schema=False)

ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "vendor/chart.umd.min.js": "text/javascript",
}
# The page runs only its own scripts and talks only to this service.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files("api").joinpath("static", *name.split("/")).read_bytes()


@router.get("/dashboard")
def page() -> Response:
    return Response(_read("dashboard.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/dashboard/assets/{name:path}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError("no such dashboard asset")
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)
