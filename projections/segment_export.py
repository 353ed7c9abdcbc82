"""A whole segment as rows for an email tool, a page at a time: constant memory however large.

Customers carry their customer key, the id of the next message to send and the rule that chose
it (journeys/recommend.py); accounts, deals and cases their id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from journeys.playbook import Playbook, Scope
from projections.picture import wholes

PAGE = 1000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_columns(playbook: Playbook, scope: Scope) -> list[str]:
    journeys = playbook.journeys_of(scope)
    if scope is Scope.customer:
        return ["customer_id", "touchpoint_count", *journeys, "next_message_id", "next_message_rule", "next_message_channel",
                "next_message_reason"]
    return ["id", "touchpoint_count", *journeys]


def segment_rows(
    system: Any, filters: dict[str, str | None], scope: Scope, since_before: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every member of the segment, in subject order, read PAGE at a time by keyset."""
    after = None
    while True:
        page = system.view.segment(filters, after, PAGE, scope, since_before)
        if not page:
            return
        after = page[-1]["subject"]
        yield from _members(system, scope, page)
        if len(page) < PAGE:
            return


def _members(system: Any, scope: Scope, page: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if scope is not Scope.customer:
        for r in page:
            yield {"id": r["subject"], "touchpoint_count": r["touchpoint_count"],
                   **{j: p.stage for j, p in r["stages"].positions.items()}}
        return
    keys = system.personal.customer_keys(page)
    page = [r for r in page if r["record_id"] in keys]  # erased ones have none
    found = wholes(system, {r["record_id"]: r["stages"] for r in page})
    for r in page:
        chosen = found[r["record_id"]].recommendation
        yield {"customer_id": keys[r["record_id"]], "touchpoint_count": r["touchpoint_count"],
               **{j: p.stage for j, p in r["stages"].positions.items()},
               "next_message_id": chosen.message.id if chosen.message else None,
               "next_message_rule": chosen.rule, "next_message_channel": chosen.channel if chosen.message else None,
               "next_message_reason": chosen.reason}


def csv_lines(columns: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV text, a line at a time. A cell that a spreadsheet would run as a formula (=, +, -, @)
    is prefixed with an apostrophe (OWASP's advice against CSV injection)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(columns)
    for row in rows:
        yield line([_safe(row.get(c)) for c in columns])


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value
