"""The OpenAPI document, with what only the active playbook knows: its journeys and stages as
enums of the parameters that name them, so a client (or schemathesis) knows the valid values."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.routes.segments import NOT_STARTED
from journeys.playbook import Playbook

JOURNEY_PARAMETERS = ("journey", "rows", "columns")


def with_playbook(schema: dict[str, Any], playbook: Playbook) -> dict[str, Any]:
    """Journey parameters become enums of the playbook's journeys; stage parameters of its stages."""
    journeys = list(playbook.journeys)
    every_stage = sorted({s for model in playbook.journeys.values() for s in model.stages} | {NOT_STARTED})
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                if name in JOURNEY_PARAMETERS:
                    values = journeys
                elif name in playbook.journeys and parameter["in"] == "query":
                    values = [*playbook.journeys[name].stages, NOT_STARTED]
                elif name == "stage":
                    values = every_stage
                else:
                    continue
                _set_enum(parameter["schema"], values)
    return schema


def _set_enum(schema: dict[str, Any], values: list[str]) -> None:
    """The enum on the string branch of a parameter's schema (optional ones are anyOf [string, null])."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["enum"] = values
            for bound in ("minLength", "maxLength"):
                branch.pop(bound, None)


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            system = getattr(app.state, "system", None)
            schema = generate()
            app.openapi_schema = with_playbook(schema, system.playbook) if system is not None else schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
