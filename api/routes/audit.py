"""Auditors' tamper evidence: verify the stored history, list the checkpoints, export a deal."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from api.auth import allow
from api.deps import SystemDep, WholeNumber
from api.errors import NOT_FOUND, NotFoundError
from api.responses import VerificationOut
from api.routes.customers import CustomerKey
from api.routes.instances import InstanceId
from journeys.chain import Checkpoint
from journeys.storage.api_keys import Role

router = APIRouter(tags=["audit"], responses=NOT_FOUND)

Hash = Query(None, pattern=r"^[0-9a-f]{64}$", description="a checkpoint root kept outside the database")


@router.get("/audit/verify", response_model=VerificationOut, dependencies=[allow(Role.auditor)])
def verify(
    system: SystemDep,
    customer_id: Optional[CustomerKey] = Query(None),
    deal_id: Optional[InstanceId] = Query(None),
    root: Optional[str] = Hash,
) -> dict[str, Any]:
    """Recompute the hash chains (all, a customer's or a deal's contacts') and the checkpoints.
    `ok` is false and `first_problem` names the first broken link when anything was changed."""
    try:
        records = system.audit_records(customer_id, deal_id)
    except LookupError as error:
        raise NotFoundError(str(error)) from None
    return system.audit.verify(records, root).as_dict()


@router.get("/audit/checkpoints", response_model=list[Checkpoint], dependencies=[allow(Role.auditor)])
def checkpoints(system: SystemDep) -> list[dict[str, Any]]:
    """Every checkpoint: its log position, how many chain heads it seals, its root and the root before."""
    return [c.as_dict() for c in system.audit.checkpoints()]


@router.get(
    "/deals/{deal_id}/export",
    dependencies=[allow(Role.auditor)],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSON Lines, a manifest last"}},
)
def export_deal(
    deal_id: InstanceId, system: SystemDep, checkpoint: Annotated[Optional[int], Query(ge=1), WholeNumber] = None,
) -> StreamingResponse:
    """A verifiable export of a deal (check it with `journeys verify-export FILE --root HASH`)."""
    try:
        lines = system.export(deal_id=deal_id, checkpoint=checkpoint)
        first = next(lines)  # errors (no such deal or checkpoint) before the answer starts
    except LookupError as error:
        raise NotFoundError(str(error)) from None

    def body():
        yield first
        yield from lines

    return StreamingResponse(
        iterate_in_threadpool(body()), media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="deal-export.jsonl"'},
    )
