"""Auditors' histories: a customer's or a deal's touchpoints in occurred order, a page at a time,
with the transitions each caused, as they are now or as they were known at a moment.

Now: the transitions the projection stored, and the revisions of them (a late touchpoint that
re-derived the past, a playbook that reclassified the instance). `as_of` (by occurrence) or `known_at` (only
touchpoints recorded by then): the same pure derivation over the touchpoints that
qualify, so "as of March 1, as known on March 3" has one answer forever.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from journeys.customer import open_personal
from journeys.playbook import Scope
from journeys.stages import derive
from journeys.storage.tables import parse_ts, ts

if TYPE_CHECKING:
    from projections.system import System


class CursorError(ValueError):
    """A cursor this service did not give out."""


def encode_cursor(touchpoint: dict[str, Any]) -> str:
    key = [ts(touchpoint["occurred_at"]), touchpoint["touchpoint_id"], touchpoint["record_id"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        occurred, touchpoint_id, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        parse_ts(occurred)
        return str(occurred), str(touchpoint_id), str(record_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise CursorError("cursor: not a cursor this service gave out") from None


@dataclass(frozen=True)
class Window:
    """Which touchpoints count: occurred by `as_of`, recorded by `known_at` (None: no limit)."""

    as_of: datetime | None = None
    known_at: datetime | None = None

    @property
    def now(self) -> bool:
        return self.as_of is None and self.known_at is None

    def admits(self, touchpoint: dict[str, Any]) -> bool:
        return (self.as_of is None or touchpoint["occurred_at"] <= self.as_of) and (
            self.known_at is None or touchpoint["recorded_at"] <= self.known_at
        )


def history(system: System, scope: Scope, subject: str, window: Window, after: str | None, limit: int) -> dict[str, Any]:
    """A page of an instance's history (a customer record or a deal), with a summary of all of it.

    As it is now, a page reads only its own rows (a range of the touchpoints' index, the
    transitions they caused) and the summary is aggregated in the database, so a page of a
    10,000-touchpoint deal costs what a page of a small one does. As of a moment or as known
    at one, the instance's qualifying touchpoints are derived again, which costs its size."""
    column = "record_id" if scope is Scope.customer else scope.key
    cursor = decode_cursor(after) if after is not None else None
    if window.now:
        return _current(system, scope, subject, column, cursor, limit)
    view = system.view
    touchpoints = [t for t in view.touchpoints_where(column, subject) if window.admits(t)]
    caused = _transitions(system, scope, subject, touchpoints, window)
    start = 0 if cursor is None else next((i for i, t in enumerate(touchpoints) if _key(t) > cursor), len(touchpoints))
    page = touchpoints[start : start + limit]
    contacts: dict[str, dict[str, Any]] = {}
    for t in touchpoints:
        found = contacts.setdefault(t["record_id"], {"record_id": t["record_id"], "touchpoints": 0,
                                                     "first": t["occurred_at"], "last": t["occurred_at"]})
        found["touchpoints"] += 1
        found["last"] = t["occurred_at"]
    reached = [{"scope": t["scope"], "journey": t["journey"], "to_stage": t["to_stage"], "restarted": t["restart"]}
               for transitions in caused.values() for t in transitions]
    return _answer(system, scope, subject, window, page, start + limit < len(touchpoints), caused,
                   list(contacts.values()), reached)


def _current(system: System, scope: Scope, subject: str, column: str, cursor: tuple[str, str, str] | None,
             limit: int) -> dict[str, Any]:
    view = system.view
    rows = view.touchpoints_page(column, subject, cursor, limit + 1)
    page = rows[:limit]
    caused: dict[tuple[str, str], list[dict[str, Any]]] = {}
    instance = None if scope is Scope.customer else (scope, subject)
    if page:
        on_page = {(t["record_id"], t["touchpoint_id"]) for t in page}
        for t in view.transitions_caused(column, subject, instance, (page[0]["occurred_at"], page[-1]["occurred_at"])):
            key = (t.pop("cause"), t["touchpoint_id"])
            if key in on_page:
                caused.setdefault(key, []).append(t)
    reached = view.stages_reached(column, subject, instance)
    return _answer(system, scope, subject, Window(), page, len(rows) > limit, caused, view.contacts_of(column, subject),
                   reached)


def _answer(
    system: System, scope: Scope, subject: str, window: Window, page: list[dict[str, Any]], more: bool,
    caused: dict[tuple[str, str], list[dict[str, Any]]], contacts: list[dict[str, Any]], reached: list[dict[str, Any]],
) -> dict[str, Any]:
    names = _customer_keys(system, {c["record_id"] for c in contacts})
    opened = _opened(system, page, names)
    return {
        "touchpoints": [
            {**t, **opened[(t["record_id"], t["touchpoint_id"])],
             "transitions": caused.get((t["record_id"], t["touchpoint_id"]), [])}
            for t in page
        ],
        "next_cursor": encode_cursor(page[-1]) if more and page else None,
        "summary": _summary(system, contacts, reached, names),
        "revisions": _revisions(system, scope, subject, [c["record_id"] for c in contacts], window),
    }


def _revisions(
    system: System, scope: Scope, subject: str, records: list[str], window: Window
) -> list[dict[str, Any]]:
    """How the instance's past was revised (late touchpoints, new playbooks), for its contacts and,
    for a deal, an account or a case, for the instance itself; only those made by `known_at`."""
    found = system.view.revisions_of(Scope.customer, sorted(records))
    if scope is not Scope.customer:
        found += system.view.revisions_of(scope, [subject])
    return sorted(
        (r for r in found if window.known_at is None or r["recorded_at"] <= window.known_at),
        key=lambda r: r["seq"],
    )


def _key(touchpoint: dict[str, Any]) -> tuple[str, str, str]:
    return (ts(touchpoint["occurred_at"]) or "", touchpoint["touchpoint_id"], touchpoint["record_id"])


def _transitions(
    system: System, scope: Scope, subject: str, touchpoints: list[dict[str, Any]], window: Window
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(record, touchpoint id) -> the transitions that touchpoint caused: for its customer, and for
    the instance itself when it is a deal, an account or a case."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ours = {(t["record_id"], t["touchpoint_id"]) for t in touchpoints}
    by_id = {t["touchpoint_id"]: t["record_id"] for t in touchpoints}
    records = sorted({t["record_id"] for t in touchpoints})
    for record in records:
        if window.now:
            caused = system.view.transitions_of(record)
        else:
            own = [t for t in system.view.touchpoints_of(record) if window.admits(t)]
            caused = _derived(system, own, Scope.customer)
        for t in caused:
            if (record, t["touchpoint_id"]) in ours:
                found.setdefault((record, t["touchpoint_id"]), []).append({**t, "scope": Scope.customer.value, "subject": None})
    if scope is not Scope.customer:
        caused = system.view.transitions_of(subject, scope=scope) if window.now else _derived(system, touchpoints, scope)
        for t in caused:
            record = by_id.get(t["touchpoint_id"])
            if record is not None:
                found.setdefault((record, t["touchpoint_id"]), []).append({**t, "scope": scope.value, "subject": subject})
    return found


def _derived(system: System, touchpoints: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    """The transitions the one derivation gives over view touchpoint rows, shaped as stored ones."""
    derivation = derive([SimpleNamespace(**t) for t in touchpoints], system.playbook, scope=scope)
    return [dict(t.__dict__, skipped=list(t.skipped), defects=list(t.defects)) for t in derivation.transitions]


def _customer_keys(system: System, records: set[str]) -> dict[str, str]:
    """Record id -> customer key, for records not erased."""
    return system.personal.customer_keys(system.view.sealed_keys(list(records)))


def _opened(
    system: System, page: list[dict[str, Any]], names: dict[str, str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The page's personal fields (customer key, actor, properties), or 'erased'."""
    records = {UUID(t["record_id"]) for t in page}
    keys = system.keyring.data_keys(records)
    opened = {}
    for t in page:
        record = UUID(t["record_id"])
        personal = open_personal(t["sealed"], record, t["touchpoint_id"], keys.get(record))
        opened[(t["record_id"], t["touchpoint_id"])] = {**personal, "customer_id": names.get(t["record_id"], "erased")}
    return opened


def _summary(
    system: System, contacts: list[dict[str, Any]], reached: list[dict[str, Any]], names: dict[str, str],
) -> dict[str, Any]:
    """Of the whole instance: touchpoints, first and last touch, the contacts (in the order they
    first touched it), and per journey the furthest stage entered and whether it restarted."""
    contacts = sorted(contacts, key=lambda c: (c["first"], c["record_id"]))
    journeys: dict[str, dict[str, Any]] = {}
    for r in reached:
        model = system.playbook.journeys[r["journey"]]
        entry = journeys.setdefault(r["journey"], {"scope": r["scope"], "furthest_stage": None, "restarted": False})
        entry["restarted"] |= bool(r["restarted"])
        if r["to_stage"] is not None and model.index(r["to_stage"]) > model.index(entry["furthest_stage"]):
            entry["furthest_stage"] = r["to_stage"]
    return {
        "touchpoint_count": sum(c["touchpoints"] for c in contacts),
        "first_touch": min((c["first"] for c in contacts), default=None),
        "last_touch": max((c["last"] for c in contacts), default=None),
        "contacts": [
            {"customer_id": names.get(c["record_id"], "erased"), "record_id": c["record_id"], "touchpoints": c["touchpoints"]}
            for c in contacts
        ],
        "journeys": journeys,
    }
