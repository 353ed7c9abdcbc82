"""Dependencies the routes share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

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


def _whole_number(value: Any) -> Any:
    """A query's integer is written as one: "0.0" or "1e3" is not read as 0 or 1000 (pydantic would)."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError("must be a whole number written with digits, e.g. 42")
    return value


WholeNumber = BeforeValidator(_whole_number)  # in the Annotated[...] of every integer query parameter
