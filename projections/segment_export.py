"""A whole segment as rows for an email tool, a page at a time: constant memory however large.

Customers carry their customer key and the id of the next message to send (the catalogue's
first message for their awareness stage not sent yet); accounts, deals and cases their id.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Iterable, Iterator

from journeys.playbook import Journey, Playbook, Scope

PAGE = 1000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_columns(playbook: Playbook, scope: Scope) -> list[str]:
    journeys = playbook.journeys_of(scope)
    if scope is Scope.customer:
        return ["customer_id", "touchpoint_count", *journeys, "next_message_id"]
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
    for r in page:
        if r["record_id"] not in keys:  # erased
            continue
        stages = r["stages"]
        awareness = stages.positions.get(Journey.awareness.value)
        sent = system.personal.sent_message_ids(r["record_id"])
        message = system.playbook.next_message(awareness.stage if awareness else None, sent)
        yield {"customer_id": keys[r["record_id"]], "touchpoint_count": r["touchpoint_count"],
               **{j: p.stage for j, p in stages.positions.items()}, "next_message_id": message.id if message else None}


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
