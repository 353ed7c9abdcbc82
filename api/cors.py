"""The Segment intake answers browsers of the configured web sites (CORS); nothing else does."""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware

Scope = dict[str, Any]


class SegmentCorsMiddleware:
    """CORS for the Segment intake only (/v1/*), for the configured origins: a site's pages send
    there with the browser SDK; every other route stays closed to cross-origin browsers."""

    def __init__(self, app: Any, origins: list[str]):
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["POST"],
                                   allow_headers=["content-type", "authorization"], max_age=600)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
