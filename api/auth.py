"""Who may call what: one rule per route, declared where the route is declared.

`allow(Role.marketer, Role.auditor)` is a FastAPI security dependency: it finds
the caller's key (`Authorization: Bearer KEY`, or HTTP basic auth with the key as
the user name, as Segment's SDKs send a write key), checks the key's role, and
applies the per-key rate limit. Admins may call everything.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from api.deps import one_value_per_parameter
from journeys.storage.api_keys import ApiKey, KeyStore, Role

CHALLENGE = 'Bearer realm="journeys", Basic realm="journeys"'

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer jrn_...`")
basic = HTTPBasic(auto_error=False, description="an API key as the user name, empty password (Segment write keys)")


class AuthError(Exception):
    """No usable key (401), the wrong role (403) or too many requests (429)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class RateLimiter:
    """At most `per_minute` requests per key in any 60 s (in this process)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        if not self.per_minute:
            return
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(name, deque())
            while seen and now - seen[0] >= 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                wait = math.ceil(60 - (now - seen[0]))
                raise AuthError(
                    429, f"rate limit of {self.per_minute} requests a minute reached for this key; "
                    f"retry in {wait} s", {"Retry-After": str(wait)},
                )
            seen.append(now)


def _secret(bearer_credentials: HTTPAuthorizationCredentials | None, basic_credentials: HTTPBasicCredentials | None) -> str | None:
    if bearer_credentials is not None:
        return bearer_credentials.credentials
    if basic_credentials is not None:
        return basic_credentials.username
    return None


def authenticate(
    request: Request,
    bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    basic_credentials: Annotated[HTTPBasicCredentials | None, Security(basic)],
) -> ApiKey:
    # A route may find the key in the body first (Segment's writeKey; see api/routes/segment.py).
    secret = _secret(bearer_credentials, basic_credentials) or getattr(request.state, "write_key", None)
    if not secret:
        raise AuthError(401, "an API key is required: send `Authorization: Bearer KEY`", {"WWW-Authenticate": CHALLENGE})
    keys: KeyStore = request.app.state.keys
    found = keys.verify(secret)
    if found is None:
        raise AuthError(401, "this API key is unknown or revoked", {"WWW-Authenticate": CHALLENGE})
    request.app.state.rate_limiter.check(found.name)
    request.state.api_key = found
    return found


def allow(*roles: Role) -> Any:
    """The rule of a route: the roles that may call it (admins always may)."""
    allowed = frozenset((*roles, Role.admin))

    def rule(request: Request, key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
        if key.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise AuthError(403, f"a {key.role.value} key may not do this; it needs one of: {names}")
        one_value_per_parameter(request)  # after the key: no key, no details
        return key

    rule.roles = allowed  # type: ignore[attr-defined]  # read by the route-by-role test
    return Security(rule)


def rule_of(call: Callable[..., Any]) -> frozenset[Role] | None:
    return getattr(call, "roles", None)


ANY_ROLE = tuple(Role)
READERS = (Role.marketer, Role.auditor)
