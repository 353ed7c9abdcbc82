"""Accounts, deals and cases: their stages in the journeys kept for them, and the contacts involved."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.auth import READERS, allow
from api.deps import SystemDep
from api.errors import BadQueryError, NotFoundError, error_response
from api.responses import InstanceTimelineOut
from api.routes.customers import After, AsOf, CustomerKey, KnownAt, Limit, MinPosition, TimelineLimit, caught_up
from api.schemas import ContactOut, DealHistoryOut, InstanceOut, StageOut, TransitionOut
from journeys.playbook import Scope
from journeys.storage.api_keys import Role
from projections.history import CursorError, Window, history
from projections.system import System
from projections.timeline import timeline

router = APIRouter(tags=["accounts, deals and cases"], responses={404: error_response("nothing has been recorded for it")})

InstanceId = CustomerKey  # the same rules: 1 to 200 characters a store can hold


@router.get("/accounts/{account_id}", response_model=InstanceOut, dependencies=[allow(*READERS)])
def account(account_id: InstanceId, system: SystemDep, min_position: MinPosition = None) -> InstanceOut:
    """An account's stages, its buying centre (contacts, their roles and stages) and the roles not engaged yet."""
    return instance(system, Scope.account, account_id, min_position)


@router.get("/accounts/{account_id}/timeline", response_model=InstanceTimelineOut, dependencies=[allow(*READERS)])
def account_timeline(account_id: InstanceId, system: SystemDep, limit: TimelineLimit = 500) -> dict[str, Any]:
    """The account's latest touchpoints (of all its contacts) and its stage transitions: the dashboard's swim lanes."""
    return instance_timeline(system, Scope.account, account_id, limit)


@router.get("/deals/{deal_id}/timeline", response_model=InstanceTimelineOut, dependencies=[allow(*READERS)])
def deal_timeline(deal_id: InstanceId, system: SystemDep, limit: TimelineLimit = 500) -> dict[str, Any]:
    """The deal's latest touchpoints (of all its contacts) and its stage transitions."""
    return instance_timeline(system, Scope.deal, deal_id, limit)


@router.get("/cases/{case_id}/timeline", response_model=InstanceTimelineOut, dependencies=[allow(*READERS)])
def case_timeline(case_id: InstanceId, system: SystemDep, limit: TimelineLimit = 500) -> dict[str, Any]:
    """The case's latest touchpoints and its stage transitions."""
    return instance_timeline(system, Scope.case, case_id, limit)


def instance_timeline(system: System, scope: Scope, key: str, limit: int) -> dict[str, Any]:
    found = timeline(system, scope, key, limit)
    if not found["touchpoint_count"]:
        raise NotFoundError(f"no touchpoint with this {scope.key} has been recorded")
    return {"id": key, **found}


@router.get("/deals/{deal_id}", response_model=InstanceOut, dependencies=[allow(*READERS)])
def deal(deal_id: InstanceId, system: SystemDep, min_position: MinPosition = None) -> InstanceOut:
    """A deal's stages (with its qualification criteria and process defects) and the contacts involved."""
    return instance(system, Scope.deal, deal_id, min_position)


@router.get("/deals/{deal_id}/history", response_model=DealHistoryOut, dependencies=[allow(Role.auditor)])
def deal_history(
    deal_id: InstanceId, system: SystemDep, after: After = None, limit: Limit = 1000,
    as_of: AsOf = None, known_at: KnownAt = None, min_position: MinPosition = None,
) -> DealHistoryOut:
    """Every touchpoint of a deal across its contacts, in occurred order, a page at a time, with the
    transitions each caused (the contact's and the deal's) and a summary of the whole deal."""
    position = caught_up(system, min_position)
    try:
        found = history(system, Scope.deal, deal_id, Window(as_of, known_at), after, limit)
    except CursorError as error:
        raise BadQueryError("after", str(error)) from None
    if not found["summary"]["touchpoint_count"]:
        raise NotFoundError("no touchpoint with this deal_id has been recorded" + (
            " by then" if as_of or known_at else ""))
    return DealHistoryOut(deal_id=deal_id, as_of=as_of, known_at=known_at, position=position, **found)


@router.get("/cases/{case_id}", response_model=InstanceOut, dependencies=[allow(*READERS)])
def case(case_id: InstanceId, system: SystemDep, min_position: MinPosition = None) -> InstanceOut:
    """A case's stages (e.g. a complaint from receipt to evaluation) and the contacts involved."""
    return instance(system, Scope.case, case_id, min_position)


def instance(system: System, scope: Scope, key: str, min_position: int | None) -> InstanceOut:
    position = caught_up(system, min_position)
    found = system.view.subject(scope, key) if system.playbook.journeys_of(scope) else None
    if found is None:
        raise NotFoundError(f"no touchpoint with this {scope.key} has been recorded")
    contacts = _contacts(system, scope, key)
    out = InstanceOut(
        id=key,
        scope=scope,
        journeys=StageOut.all_of(found["stages"], system.playbook),
        touchpoint_count=found["touchpoint_count"],
        contacts=contacts,
        transitions=[TransitionOut(**t) for t in system.view.transitions_of(key, scope=scope)],
        position=position,
    )
    if scope in (Scope.account, Scope.deal):
        engaged = {c.buying_role for c in contacts if c.buying_role}
        out.missing_roles = [r for r in system.playbook.buying_roles if r not in engaged]
        out.warnings = _warnings(out, system)
    return out


def _contacts(system: System, scope: Scope, key: str) -> list[ContactOut]:
    """The customers whose touchpoints carry the key, with their latest role and their stages."""
    roles: dict[str, str | None] = {}
    counts: dict[str, int] = {}
    for t in system.view.touchpoints_where(scope.key, key):  # occurred order: the latest role wins
        counts[t["record_id"]] = counts.get(t["record_id"], 0) + 1
        roles[t["record_id"]] = t["buying_role"] or roles.get(t["record_id"])
    rows = [row for record in counts if (row := system.view.customer(record)) is not None]
    names = system.personal.customer_keys(rows)
    return [
        ContactOut(
            customer_id=names.get(row["record_id"], "erased"),
            record_id=row["record_id"],
            buying_role=roles[row["record_id"]],
            touchpoints=counts[row["record_id"]],
            stages={j: p.stage for j, p in row["stages"].positions.items()},
        )
        for row in rows
    ]


def _warnings(out: InstanceOut, system: System) -> list[str]:
    """Expected buying-centre roles (a decider, a buyer) not engaged although the instance is far
    enough in a journey to act on it: from the stage the playbook names (roles_expected_from)."""
    playbook = system.playbook
    warnings: list[str] = []
    for name, stage in out.journeys.items():
        model = playbook.journeys[name]
        if stage.stage is not None and model.index(stage.stage) >= playbook.roles_warned_from(name):
            warnings += [f"no {role} engaged while the {out.scope.value} is in {stage.stage} ({model.title})"
                         for role in playbook.expected_roles if role in (out.missing_roles or [])]
    return warnings
