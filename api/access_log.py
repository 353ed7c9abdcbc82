"""One log line per request: method, route template, status, duration and a request id.

Uvicorn's own access log prints the request path, which can hold a customer key
(/customers/jane@example.com/stages): it is turned off, and this logs the route's
template instead. The request id is also sent back as X-Request-ID, and is on every line
logged while the request is served (journeys/logs.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from journeys import logs, metrics

log = logging.getLogger("journeys.access")


class AccessLogMiddleware:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        token = logs.REQUEST_ID.set(request_id)  # on every line logged while serving it
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unrouted)"
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(scope["method"], route, str(status)).observe(elapsed)
            log.info(
                "%s %s %s %.1fms request_id=%s", scope["method"], route, status, elapsed * 1000, request_id,
                extra={"method": scope["method"], "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 1)},
            )
            logs.REQUEST_ID.reset(token)
