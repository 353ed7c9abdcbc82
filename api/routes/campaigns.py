"""What campaigns cost: marketers record spend per campaign and period."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from api.auth import allow, authenticate
from api.deps import SystemDep
from api.errors import BadQueryError
from journeys.storage.api_keys import ApiKey, Role
from journeys.touchpoint import TEXT_PATTERN, not_blank
from projections.spend import MAX_AMOUNT, PERIOD_PATTERN, Spend, SpendError, parse_spend

router = APIRouter(prefix="/campaigns", tags=["campaigns"], dependencies=[allow(Role.marketer)])

# Not blank, no NUL (not_blank says which), as the document's pattern says; GET and POST alike.
Campaign = Annotated[str, Path(min_length=1, max_length=200, json_schema_extra={"pattern": TEXT_PATTERN}), AfterValidator(not_blank)]


AMOUNT_TEXT = r"^[0-9]{1,15}(\.[0-9]{1,20})?$"  # [0-9]: \d is not ASCII in every engine


def _amount_text(value: Any) -> Any:
    """An amount in a string is plain digits, as the document says (no exponent, sign, NaN or Infinity)."""
    if isinstance(value, str) and not re.fullmatch(AMOUNT_TEXT, value):
        raise ValueError("must be a number, or a string of digits with an optional decimal part (e.g. \"1200.50\")")
    return value


Amount = Annotated[
    Decimal, BeforeValidator(_amount_text), Field(ge=0, lt=MAX_AMOUNT),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": float(MAX_AMOUNT)},
                              {"type": "string", "pattern": AMOUNT_TEXT}]}),
]


class SpendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(max_length=30, pattern=PERIOD_PATTERN, description="a month (2025-03) or days (2025-03-01/2025-03-15)")
    amount: Amount = Field(description="what the campaign cost in the period, e.g. 1200.50 or \"1200.50\"")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. EUR")


class SpendOut(BaseModel):
    campaign: str
    period_start: str
    period_end: str
    amount: str
    currency: str

    @classmethod
    def of(cls, s: Spend) -> SpendOut:
        return cls(campaign=s.campaign, period_start=s.start.isoformat(), period_end=s.end.isoformat(),
                   amount=str(s.amount), currency=s.currency)


@router.post("/{campaign}/spend", status_code=201, response_model=SpendOut)
def record_spend(system: SystemDep, campaign: Campaign, body: SpendIn,
                 key: Annotated[ApiKey, Depends(authenticate)]) -> Any:
    """Record what a campaign cost in a period (cost per lead and per advance use it)."""
    try:
        spend = parse_spend(campaign, body.period, body.amount, body.currency)
    except SpendError as error:
        raise BadQueryError(error.field, error.message, location="body") from None
    system.spend.record([spend], recorded_by=key.name)
    return SpendOut.of(spend)


@router.get("/{campaign}/spend", response_model=list[SpendOut])
def spend_of(system: SystemDep, campaign: Campaign) -> Any:
    """The spend recorded for a campaign, by period."""
    return [SpendOut.of(s) for s in system.spend.entries(campaign)]
