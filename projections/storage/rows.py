"""Rows to and from the read models' tables: timestamps as text, JSON columns, the counters' key."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from journeys.playbook import Journey, Playbook, Scope
from journeys.stages import Position, Stages, Transition
from journeys.storage.tables import parse_ts, ts
from projections.storage.changes import Revision, SubjectChange
from projections.storage.schema import TOUCHPOINTS, TRANSITIONS

CHUNK = 500  # subjects per IN (...) list


def now() -> datetime:
    return datetime.now(UTC)


def combination(playbook: Playbook, scope: Scope, marks: dict[str, list[Any]]) -> str:
    """The counters' key: each journey of the scope's [stage, has process defects], as JSON."""
    return json.dumps({j: marks.get(j, [playbook.journeys[j].initial, False]) for j in playbook.journeys_of(scope)})


def marks_of(stages: Stages) -> dict[str, list[Any]]:
    return {j: [p.stage, bool(stages.defects.get(j))] for j, p in stages.positions.items()}


def chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def by_scope(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """(scope, subject) keys as (scope, subjects) in sorted chunks: one IN (...) list per statement."""
    grouped: dict[str, list[str]] = {}
    for scope, subject in keys:
        grouped.setdefault(scope, []).append(subject)
    for scope, subjects in sorted(grouped.items()):
        for chunk in chunks(sorted(subjects)):
            yield scope, chunk


def position(row: Any) -> Position:
    return Position(row["stage"], parse_ts(row["since"]), row["cause_id"], row["cause_type"])


def subject_row(change: SubjectChange) -> list[Any]:
    stages = change.stages
    last_at, last_id = stages.last_key or (None, None)
    return [change.scope.value, change.subject, ts(stages.first_seen), ts(last_at), last_id, change.touchpoint_count]


def position_row(change: SubjectChange, journey: str, fingerprint: str) -> list[Any]:
    p = change.stages[journey]
    met = change.stages.met.get(journey)
    defects = change.stages.defects.get(journey)
    return [
        change.scope.value, change.subject, journey, p.stage, ts(p.since), p.touchpoint_id, p.touchpoint_type,
        json.dumps([[c.name, ts(c.since), c.touchpoint_id] for c in met]) if met else None,
        json.dumps(list(defects)) if defects else None, fingerprint,
    ]


def touchpoint_row(t: dict[str, Any]) -> list[Any]:
    criteria = t.get("criteria")
    return [
        t["record_id"], t["touchpoint_id"], t["type"], t["channel"], ts(t["occurred_at"]), ts(t["recorded_at"]),
        t["source"], t["campaign"], t["deal_id"], t.get("account_id"), t.get("case_id"), t.get("buying_role"),
        json.dumps(list(criteria)) if criteria else None, t["sealed"], t["customer"],
    ]


def touchpoint_from_row(row: Any) -> dict[str, Any]:
    found = {col: row[col] for col in TOUCHPOINTS.names}
    found["occurred_at"] = parse_ts(found["occurred_at"])
    found["recorded_at"] = parse_ts(found["recorded_at"])
    found["criteria"] = json.loads(found["criteria"]) if found["criteria"] else []
    return found


def transition_row(change: SubjectChange, t: Transition, fingerprint: str) -> list[Any]:
    return [
        change.scope.value, change.subject, t.journey, ts(t.at), t.touchpoint_id, t.from_stage, t.to_stage,
        _skipped(t), int(t.restart), t.touchpoint_type,
        names(t.defects), change.causes.get(t.touchpoint_id), fingerprint,
        ts(t.from_since), (t.at - t.from_since).total_seconds() if t.from_since is not None else None,
    ]


def stored_transition_row(change: SubjectChange, t: dict[str, Any]) -> list[Any]:
    """A transition as read (`transition_from_row`) as `transition_row` writes it: equal rows
    are the same history."""
    at, since = t["at"], t["from_since"]
    return [
        change.scope.value, change.subject, t["journey"], ts(at), t["touchpoint_id"], t["from_stage"], t["to_stage"],
        names(tuple(t["skipped"])) or "[]", int(t["restart"]), t["touchpoint_type"],
        names(tuple(t["defects"])), t["record_id"], t["playbook"],
        ts(since), (at - since).total_seconds() if since is not None else None,
    ]


TRANSITION_KEY = [TRANSITIONS.names.index(column.strip()) for column in TRANSITIONS.key.split(",")]


def revision_row(scope: Scope, subject: str, r: Revision, fingerprint: str) -> list[Any]:
    def transitions(found: list[dict[str, Any]]) -> str:
        return json.dumps([{**t, "at": ts(t["at"]), "from_since": ts(t.get("from_since"))} for t in found])

    return [
        scope.value, subject, ts(r.recorded_at), r.kind, r.reason, r.cause_touchpoint_id, r.cause_record_id,
        fingerprint, json.dumps(r.before), json.dumps(r.after), transitions(r.removed), transitions(r.added),
    ]


def revision_from_row(row: Any) -> dict[str, Any]:
    def transitions(text: str) -> list[dict[str, Any]]:
        return [{**t, "at": parse_ts(t["at"]), "from_since": parse_ts(t.get("from_since"))} for t in json.loads(text)]

    return {
        "seq": row["seq"], "scope": row["scope"], "subject": row["subject"], "kind": row["kind"],
        "reason": row["reason"], "recorded_at": parse_ts(row["recorded_at"]),
        "cause_touchpoint_id": row["cause_touchpoint_id"], "cause_record_id": row["cause_record_id"],
        "playbook": row["playbook"], "before": json.loads(row["before"]), "after": json.loads(row["after"]),
        "removed": transitions(row["removed"]), "added": transitions(row["added"]),
    }


def outbox_row(change: SubjectChange, t: Transition) -> list[Any]:
    awareness = change.stages.positions.get(Journey.awareness.value)
    return [
        change.scope.value, change.subject, "stage", t.journey, t.from_stage, t.to_stage,
        _skipped(t), int(t.restart), ts(t.at), t.touchpoint_id, t.touchpoint_type,
        awareness.stage if awareness else None, names(t.defects),
    ]


def erased_row(record_id: str, at: datetime) -> list[Any]:
    """An erasure in the outbox: the publisher sends it and a tombstone for the record."""
    return [Scope.customer.value, record_id, "erased", *[None] * 5, ts(at), *[None] * 4]


def transition_from_row(row: Any) -> dict[str, Any]:
    return {
        "journey": row["journey"],
        "from_stage": row["from_stage"],
        "to_stage": row["to_stage"],
        "skipped": _list(row["skipped"]),
        "restart": bool(row["is_restart"]),
        "at": parse_ts(row["occurred_at"]),
        "touchpoint_id": row["touchpoint_id"],
        "touchpoint_type": row["touchpoint_type"],
        "defects": _list(row["defects"]),
        # keys(): `in` on an sqlite3.Row looks at its values
        "record_id": row["record_id"] if "record_id" in row.keys() else None,  # noqa: SIM118
        "playbook": row["playbook"] if "playbook" in row.keys() else None,  # noqa: SIM118
        "from_since": parse_ts(row["from_since"]) if "from_since" in row.keys() else None,  # noqa: SIM118
    }


@lru_cache(maxsize=4096)
def names(items: tuple[str, ...]) -> str | None:
    """Stage or criteria names as a JSON list column (None: none). A derivation writes the same
    few lists (the stages a move skips, its defects) over and over: each is encoded once."""
    return json.dumps(list(items)) if items else None


def _list(text: str | None) -> list[Any]:
    """A JSON list column: most transitions skip nothing and have no defects, read without a decoder."""
    return json.loads(text) if text and text != "[]" else []


def _skipped(t: Transition) -> str:
    return names(t.skipped) or "[]"
