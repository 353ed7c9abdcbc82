"""What campaigns cost: spend records (campaign, period, amount, currency) and cost per lead
and per advance, from the leads and attribution the analytics give.

Spend is input marketing records, not derived: it is kept beside the read models across
generations. A period is a calendar month ("2025-03") or an interval of dates
("2025-03-01/2025-03-15", both days included); a report over a window counts the share
of each period's spend that falls in it, day by day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from journeys.storage.tables import ts
from journeys.touchpoint import YEAR_PATTERN, check_text
from projections.storage.view import JourneyView

CURRENCY = re.compile(r"^[A-Z]{3}$")
_DAY = YEAR_PATTERN + r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"  # [0-9]: \d is not ASCII in every engine
# What parse_period takes, as the OpenAPI document's pattern: a month, or two days joined by "/". It cannot
# say that the day exists in its month (2025-02-30) or that the interval ends after it starts.
PERIOD_PATTERN = "^" + YEAR_PATTERN + r"-(0[1-9]|1[0-2])$|^" + _DAY + "/" + _DAY + "$"
PERIOD = re.compile(PERIOD_PATTERN)
MAX_AMOUNT = Decimal("1e15")


class SpendError(ValueError):
    """A spend record that cannot be stored: says which field and why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Spend:
    campaign: str
    start: date  # first day
    end: date  # last day, included
    amount: Decimal
    currency: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def parse_period(text: str) -> tuple[date, date]:
    """A month ("2025-03") or an interval of days ("2025-03-01/2025-03-15") as (first, last day)."""
    if not PERIOD.fullmatch(text):  # fullmatch: `$` would let a trailing newline through
        raise SpendError("period", "is neither a month (2025-03) nor an interval of days (2025-03-01/2025-03-15)")
    start, sep, end = text.partition("/")
    if not sep:
        first = date(int(text[:4]), int(text[5:7]), 1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        raise SpendError("period", "is not a real date (a day its month does not have)") from None
    if last < first:
        raise SpendError("period", "ends before it starts")
    return first, last


def parse_spend(campaign: str, period: str, amount: str | Decimal | int | float, currency: str) -> Spend:
    """A checked spend record; SpendError names the field that is wrong."""
    for field, text in (("campaign", campaign), ("period", period), ("currency", currency)):
        try:
            check_text(text)
        except ValueError as error:
            raise SpendError(field, str(error)) from None
    campaign = campaign.strip()
    if not campaign or len(campaign) > 200:
        raise SpendError("campaign", "must be 1 to 200 characters")
    start, end = parse_period(period)
    try:
        value = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise SpendError("amount", "is not a number") from None
    if not value.is_finite() or value < 0 or value >= MAX_AMOUNT:
        raise SpendError("amount", "must be a finite amount from 0 up to 10^15")
    currency = currency.strip().upper()
    if not CURRENCY.match(currency):
        raise SpendError("currency", "is not a three-letter ISO 4217 code (e.g. EUR)")
    return Spend(campaign, start, end, value, currency)


class SpendBook:
    """Spend records stored beside the view, and what they make of leads and advances."""

    def __init__(self, view: JourneyView):
        self.view = view

    def record(self, entries: list[Spend], recorded_by: str) -> int:
        """Store spend records in one transaction (all or none); how many."""
        now = ts(datetime.now(UTC))
        return self.view.execute_many(
            f"INSERT INTO {self.view.table('spend')} (campaign, period_start, period_end, amount, currency, "
            "recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [[e.campaign, e.start.isoformat(), e.end.isoformat(), str(e.amount), e.currency, now, recorded_by]
             for e in entries],
        )

    def entries(self, campaign: str | None = None) -> list[Spend]:
        where, params = ("WHERE campaign = ?", [campaign]) if campaign is not None else ("", [])
        rows = self.view.query(f"SELECT * FROM {self.view.table('spend')} {where} ORDER BY campaign, period_start, seq", params)
        return [
            Spend(r["campaign"], date.fromisoformat(r["period_start"]), date.fromisoformat(r["period_end"]),
                  Decimal(r["amount"]), r["currency"])
            for r in rows
        ]

    def spent(self, start: datetime | None, end: datetime | None) -> dict[str, dict[str, Decimal]]:
        """campaign -> currency -> the spend falling in [start, end), prorated by day."""
        totals: dict[str, dict[str, Decimal]] = {}
        for e in self.entries():
            share = _overlap_days(e, start, end)
            if share:
                by_currency = totals.setdefault(e.campaign, {})
                by_currency[e.currency] = by_currency.get(e.currency, Decimal(0)) + e.amount * share / e.days
        return totals


def _overlap_days(e: Spend, start: datetime | None, end: datetime | None) -> int:
    """Whole days of the spend's period inside [start, end) (a day counts if it begins inside)."""
    first = e.start if start is None else max(e.start, _first_day_from(start))
    last = e.end if end is None else min(e.end, _last_day_before(end))
    return max(0, (last - first).days + 1)


def _first_day_from(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return day if moment <= midnight else day + timedelta(days=1)


def _last_day_before(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=1) if moment <= datetime(day.year, day.month, day.day, tzinfo=UTC) else day


def cost_report(spent: dict[str, dict[str, Decimal]] | None, leads: dict[str, dict[str, int]],
                advances: dict[str, dict[str, float]], key: str = "campaign") -> list[dict[str, Any]]:
    """Per campaign: spend per currency, leads (lead-funnel entries), their conversion to the
    funnel's last stage and to customers, cost per lead, and per stage the credited advances and
    cost per advance (per currency: amounts in different currencies are never added).
    Without spend (None: e.g. per channel, as spend is recorded per campaign): the rest."""
    out = []
    for name in sorted((set(spent or {})) | set(leads) | {c for by in advances.values() for c in by}):
        found = leads.get(name, {})
        n = found.get("leads", 0)
        row: dict[str, Any] = {
            key: name, "leads": n, "converted": found.get("converted", 0), "customers": found.get("customers", 0),
            "conversion_rate": round(found.get("converted", 0) / n, 4) if n else None,
            "lead_to_customer_rate": round(found.get("customers", 0) / n, 4) if n else None,
            "stages": {stage: {"advances": round(by.get(name, 0.0), 4)} for stage, by in advances.items()},
        }
        if spent is not None:
            money = spent.get(name, {})
            row["spend"] = {cur: _money(v) for cur, v in money.items()}
            row["cost_per_lead"] = {cur: _money(v / n) for cur, v in money.items()} if n else {}
            for stage, by in advances.items():
                credit = by.get(name)
                row["stages"][stage]["cost_per_advance"] = (
                    {cur: _money(v / Decimal(str(credit))) for cur, v in money.items()} if credit else {}
                )
        out.append(row)
    return out


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))
