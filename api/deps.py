"""Dependencies the routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from projections.system import System


def get_system(request: Request) -> System:
    return request.app.state.system


SystemDep = Annotated[System, Depends(get_system)]


def one_value_per_parameter(request: Request) -> None:
    """No route takes a list in its query: a parameter given twice is refused, never read as its last value."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise RequestValidationError([{"loc": ("query", name), "msg": "is given more than once; give it once",
                                           "type": "value_error"}])
        seen.add(name)
