"""The OpenAPI document, with what only the active playbook knows: its journeys and stages as
enums of the parameters that name them, so a client (or schemathesis) knows the valid values."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.routes.segments import NOT_STARTED
from journeys.playbook import Playbook

JOURNEY_PARAMETERS = ("journey", "rows", "columns")
CUSTOMER = {"customer_id": "$response.body#/customer_id"}
# OpenAPI links: what a client (or schemathesis' stateful phase) can do next with what an answer names.
LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/touchpoints", "post"): {
        "Stages": ("/customers/{customer_id}/stages", "get", CUSTOMER),
        "History": ("/customers/{customer_id}/history", "get", CUSTOMER),
        "Timeline": ("/customers/{customer_id}/timeline", "get", CUSTOMER),
        "Erase": ("/customers/{customer_id}", "delete", CUSTOMER),
    },
    ("/keys", "post"): {"Revoke": ("/keys/{name}", "delete", {"name": "$response.body#/name"})},
    ("/campaigns/{campaign}/spend", "post"): {
        "Spend": ("/campaigns/{campaign}/spend", "get", {"campaign": "$request.path.campaign"}),
    },
}


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
    _add_links(schema)
    return schema


def _add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for (path, method), links in LINKS.items():
        for status, response in paths.get(path, {}).get(method, {}).get("responses", {}).items():
            if status.startswith("2"):
                response["links"] = {
                    name: {"operationRef": "#/paths/" + target.replace("~", "~0").replace("/", "~1") + "/" + verb,
                           "parameters": parameters}
                    for name, (target, verb, parameters) in links.items()
                }


def _set_enum(schema: dict[str, Any], values: list[str]) -> None:
    """The enum on the string branch of a parameter's schema (optional ones are anyOf [string, null])."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["enum"] = values
            for bound in ("minLength", "maxLength"):
                branch.pop(bound, None)


def inlined(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A model's JSON schema with its `$defs` written in place, to embed in an operation's own schema."""
    if defs is None and isinstance(schema, dict):
        defs = schema.get("$defs", {})
        schema = {k: v for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return inlined((defs or {})[ref.removeprefix("#/$defs/")], defs)
        return {k: inlined(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inlined(v, defs) for v in schema]
    return schema


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            system = getattr(app.state, "system", None)
            schema = generate()
            app.openapi_schema = with_playbook(schema, system.playbook) if system is not None else schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
