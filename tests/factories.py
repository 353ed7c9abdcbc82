"""Touchpoint factories and a realistic B2B deal for the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from journeys.touchpoint import Touchpoint
from projections.storage.schema import CREDIT_TABLES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rid(system: Any, customer: str) -> str:
    """The record id the keyring gave a customer key (view rows are keyed by it)."""
    found = system.keyring.find(customer)
    assert found is not None, f"no record for {customer!r}"
    return str(found)


def tp(touchpoint_id: str, type_: str, days: float, customer: str = "acme", **extra: Any) -> Touchpoint:
    return Touchpoint(**payload(touchpoint_id, type_, days, customer, **extra))


def payload(touchpoint_id: str, type_: str, days: float, customer: str = "acme", **extra: Any) -> dict[str, Any]:
    return {
        "touchpoint_id": touchpoint_id,
        "customer_id": customer,
        "type": type_,
        "channel": extra.pop("channel", "web"),
        "occurred_at": (T0 + timedelta(days=days)).isoformat(),
        "source": extra.pop("source", "crm"),
        **extra,
    }


# A B2B deal: a lead, a first evaluation that is lost, a restart, and a signed contract.
B2B_DEAL = [
    ("d01", "ad_clicked", 0),
    ("d02", "lead_captured", 1),
    ("d03", "inquiry_received", 2),
    ("d04", "call_connected", 3),
    ("d05", "needs_assessment_held", 5),
    ("d06", "demo_delivered", 8),
    ("d07", "quote_requested", 12),
    ("d08", "deal_lost", 20),
    ("d09", "message_sent", 30),
    ("d10", "email_opened", 60),
    ("d11", "requirements_shared", 62),
    ("d12", "qualification_assessed", 63),
    ("d13", "proposal_sent", 70),
    ("d14", "price_negotiated", 75),
    ("d15", "contract_signed", 80),
]


def b2b_deal(customer: str = "globex") -> list[dict[str, Any]]:
    extra = {"d09": {"properties": {"message_id": "aware-benefits"}, "channel": "email"},
             "d12": {"properties": {"criteria": ["budget", "authority", "need", "timeframe"]}}}
    return [payload(i, t, d, customer, **extra.get(i, {})) for i, t, d in B2B_DEAL]


def counters(view: Any) -> dict[str, set[tuple[Any, ...]]]:
    """The stay, credit and lead counters' rows that count something, per table (the stay
    counters of each campaign too), and which campaigns touched each instance."""
    found = {t: {tuple(r) for r in view.query(f"SELECT * FROM {view.table(t)} WHERE n != 0")}
             for t in ("stay_ends", "stay_times", "stays_open", "tag_stay_ends", "tag_stay_times", "tag_stays_open")}
    for table in CREDIT_TABLES:
        counted = " OR ".join(f"{name} != 0" for name, kind in table.columns if kind == "bigint")
        found[table.name] = {tuple(r) for r in view.query(f"SELECT * FROM {view.table(table.name)} WHERE {counted}")}
    found["instance_tags"] = {tuple(r) for r in view.query(f"SELECT * FROM {view.table('instance_tags')}")}
    return found


def assert_counters_equal_a_recount(view: Any) -> None:
    """What the projection kept batch by batch equals counting the stays, the credit of every
    advance and the leads again from scratch."""
    kept = counters(view)
    view.recount_stays()
    view.recount_credits()
    recounted = counters(view)
    assert recounted == kept
