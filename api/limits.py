"""Request bodies are bounded: a body over the limit is refused with 413 before it is parsed.
And the Segment intake answers browsers of the configured web sites (CORS), nothing else does.

A declared Content-Length over the limit is refused without reading anything; a
body without one (chunked) is read up to the limit and no further. The body is
then handed on to the app, which would have held it in memory anyway.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.middleware.cors import CORSMiddleware

Scope = dict[str, Any]


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                await _refuse(send, 413, self._too_large(f"declared as {int(declared)} bytes"))
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, self._too_large("larger than that"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, what: str) -> str:
        return (
            f"the request body is {what}; the limit is {self.max_bytes} bytes "
            "(split large batches into several requests)"
        )


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


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
