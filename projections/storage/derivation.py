"""What the projection reads to derive a batch: instances' current stages, their stages just
before a late touchpoint, the touchpoints from then on, and identity links."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from journeys.playbook import Scope
from journeys.stages import Criterion, Position, Stages, initial_stages
from journeys.storage.tables import parse_ts, ts
from projections.storage.base import ReadModelStore
from projections.storage.rows import chunks, position, transition_from_row
from projections.storage.schema import SUBJECT_COLUMN


def derivation_row(row: Any) -> dict[str, Any]:
    """A touchpoint row as the derivation reads it (criteria decoded)."""
    return {**dict(row), "criteria": json.loads(row["criteria"]) if row["criteria"] else None}


class DerivationReads(ReadModelStore):
    def load_states(self, scope: Scope, subjects: Sequence[str]) -> dict[str, tuple[Stages, int]]:
        """Current stages and touchpoint count of the given instances of a scope."""
        found: dict[str, tuple[Stages, int]] = {}
        rows = self.rows_of(self.table("subjects"), "subject", subjects, "x.scope = ?", [scope.value])
        positions = self.positions_of([r["subject"] for r in rows], scope)
        for row in rows:
            stages = self.stages_of(scope, positions.get(row["subject"], []), row)
            found[row["subject"]] = (stages, row["touchpoint_count"])
        return found

    def positions_of(self, subjects: list[str], scope: Scope) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        journeys = self.playbook.journeys_of(scope)  # (journey, subject) is the key: its index serves this
        for row in self.rows_of(self.table("positions"), "subject", subjects,
                                f"x.journey IN ({', '.join('?' * len(journeys))})", journeys):
            found.setdefault(row["subject"], []).append(row)
        return found

    def _initial(self, scope: Scope) -> Stages:
        """A scope's initial stages, made once per playbook (never mutated: folds copy)."""
        cache = self.__dict__.setdefault("_initial_stages", {})
        key = (id(self.playbook), scope)
        if key not in cache:
            cache[key] = initial_stages(self.playbook, scope)
        return cache[key]

    def stages_of(self, scope: Scope, positions: list[Any], subject_row: Any | None) -> Stages:
        placed = dict(self._initial(scope).positions)
        met, defects = {}, {}
        for row in positions:
            journey = row["journey"]
            if journey not in placed:
                continue  # a journey the playbook no longer has
            placed[journey] = position(row)
            if row["met"]:
                met[journey] = tuple(Criterion(n, datetime.fromisoformat(s), t) for n, s, t in json.loads(row["met"]))
            if row["defects"]:
                defects[journey] = tuple(json.loads(row["defects"]))
        if subject_row is None:
            return Stages(placed, met=met, defects=defects)
        last = parse_ts(subject_row["last_occurred_at"])
        last_key = None if last is None else (last, subject_row["last_touchpoint_id"])
        return Stages(placed, parse_ts(subject_row["first_seen"]), last_key, met, defects)

    def stages_before(self, scope: Scope, subject: str, at: datetime) -> Stages:
        """The instance's stages just before `at`: what folding its touchpoints up to then gave.

        Read from the stage history (each journey's last transition before `at`, and the
        criteria and defects since its last restart), so a late touchpoint re-derives from
        there instead of from the instance's first touchpoint.
        """
        column, touchpoints = SUBJECT_COLUMN[scope], self.table("touchpoints")
        last = self.query(
            f"SELECT occurred_at, touchpoint_id FROM {touchpoints} WHERE {column} = ? AND occurred_at = "
            f"(SELECT MAX(occurred_at) FROM {touchpoints} WHERE {column} = ? AND occurred_at < ?)",
            [subject, subject, ts(at)],
        )
        initial = self._initial(scope)
        if not last:
            return initial  # nothing before `at`: derive from the start
        first = self.query(f"SELECT MIN(occurred_at) AS first FROM {touchpoints} WHERE {column} = ?", [subject])
        first_seen = parse_ts(first[0]["first"])
        positions, met, defects = {}, {}, {}
        for journey in initial.positions:
            history = self._since_last_restart(scope, subject, journey, at)
            if history:
                t = history[-1]
                positions[journey] = Position(t["to_stage"], t["at"], t["touchpoint_id"], t["touchpoint_type"])
                flagged = tuple(d for x in history for d in x["defects"])  # a new cycle may begin with some
                if flagged:
                    defects[journey] = flagged
            else:
                stage = initial[journey].stage
                positions[journey] = Position(stage, first_seen if stage is not None else None)
            if self.playbook.journeys[journey].qualification:
                since = (history[0]["at"], history[0]["touchpoint_id"]) if history and history[0]["restart"] else None
                confirmed = self._criteria_between(scope, subject, since, at)
                if confirmed:
                    met[journey] = confirmed
        last_key = (datetime.fromisoformat(last[0]["occurred_at"]), max(r["touchpoint_id"] for r in last))
        return Stages(positions, first_seen, last_key, met, defects)

    def _since_last_restart(self, scope: Scope, subject: str, journey: str, at: datetime) -> list[dict[str, Any]]:
        """A journey's transitions before `at`, from its last restart on, in occurred order."""
        transitions = self.table("transitions")
        rows = self.query(
            f"SELECT * FROM {transitions} WHERE scope = ? AND subject = ? AND journey = ? AND occurred_at < ? "
            f"AND occurred_at >= COALESCE((SELECT MAX(occurred_at) FROM {transitions} WHERE scope = ? AND subject = ? "
            "AND journey = ? AND is_restart = 1 AND occurred_at < ?), '')",
            [scope.value, subject, journey, ts(at), scope.value, subject, journey, ts(at)],
        )
        found = sorted((transition_from_row(r) for r in rows), key=lambda t: (t["at"], t["touchpoint_id"]))
        restarts = [i for i, t in enumerate(found) if t["restart"]]
        return found[restarts[-1]:] if restarts else found

    def _criteria_between(
        self, scope: Scope, subject: str, after: tuple[datetime, str] | None, before: datetime
    ) -> tuple[Criterion, ...]:
        """The criteria first confirmed after `after` (a restart) and before `before`, in order."""
        rows = self.query(
            f"SELECT touchpoint_id, occurred_at, criteria FROM {self.table('touchpoints')} "
            f"WHERE {SUBJECT_COLUMN[scope]} = ? AND criteria IS NOT NULL AND occurred_at >= ? AND occurred_at < ?",
            [subject, ts(after[0]) if after else "", ts(before)],
        )
        confirmations = sorted(
            (parse_ts(r["occurred_at"]), r["touchpoint_id"], json.loads(r["criteria"])) for r in rows
        )
        met: dict[str, Criterion] = {}
        for occurred_at, touchpoint_id, names in confirmations:
            if after is not None and (occurred_at, touchpoint_id) <= after:
                continue
            for name in names:
                met.setdefault(name, Criterion(name, occurred_at, touchpoint_id))  # type: ignore[arg-type]  # rows have times
        return tuple(met.values())

    def touchpoints_from(self, scope: Scope, subject: str, at: datetime) -> list[dict[str, Any]]:
        """What the derivation reads of an instance's touchpoints that occurred at or after `at`."""
        rows = self.query(
            f"SELECT touchpoint_id, type, occurred_at, criteria, record_id FROM {self.table('touchpoints')} "
            f"WHERE {SUBJECT_COLUMN[scope]} = ? AND occurred_at >= ?",
            [subject, ts(at)],
        )
        return [derivation_row(row) for row in rows]

    def touchpoint_pages(
        self, scope: Scope, subject: str, at: datetime, page: int = 128, largest: int = 8192
    ) -> Iterator[list[dict[str, Any]]]:
        """`touchpoints_from` in occurred order (ties by touchpoint id), in pages, so a caller
        that stops early (a late touchpoint whose effect ends) reads little; each page twice the
        one before (up to `largest`), so one that reads on needs few. Pages end between occurred
        times: the ties of one time are sorted together."""
        column, touchpoints = SUBJECT_COLUMN[scope], self.table("touchpoints")
        select = f"SELECT touchpoint_id, type, occurred_at, criteria, record_id FROM {touchpoints} WHERE {column} = ? "
        start, bound = ts(at), ">="
        while True:
            rows = self.query(f"{select}AND occurred_at {bound} ? ORDER BY occurred_at LIMIT ?", [subject, start, page])
            more = len(rows) == page
            if more:
                last = rows[-1]["occurred_at"]
                rows = [r for r in rows if r["occurred_at"] != last]
                if rows:
                    start, bound = last, ">="
                else:  # a whole page of one occurred time: all of that time, then after it
                    rows = self.query(f"{select}AND occurred_at = ?", [subject, last])
                    start, bound = last, ">"
            yield sorted(map(derivation_row, rows), key=lambda r: (r["occurred_at"], r["touchpoint_id"]))
            if not more:
                return
            page = min(2 * page, largest)

    def histories(
        self, scope: Scope, subjects: Sequence[str], transitions: bool = True
    ) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Several instances' touchpoints (as `touchpoints_from` reads them) and stored stage
        histories (as `transitions_of` orders them; none unless `transitions`), a few queries
        for all: small instances with a late touchpoint are derived again from these."""
        column = SUBJECT_COLUMN[scope]
        found: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {s: ([], []) for s in subjects}
        for row in self.rows_of(self.table("touchpoints"), column, subjects, columns=(
                f"x.{column} AS subject, x.touchpoint_id, x.type, x.occurred_at, x.criteria, x.record_id")):
            found[row["subject"]][0].append(derivation_row(row))
        if transitions:
            for row in self.rows_of(self.table("transitions"), "subject", subjects, "x.scope = ?", [scope.value]):
                found[row["subject"]][1].append(transition_from_row(row))
        return {subject: (rows, self.in_history_order(stored)) for subject, (rows, stored) in found.items()}

    def in_history_order(self, transitions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Transitions in occurred order; those of one touchpoint in the playbook's journey order."""
        order = {j: i for i, j in enumerate(self.playbook.journeys)}
        return sorted(transitions, key=lambda t: (t["at"], t["touchpoint_id"], order.get(t["journey"], len(order))))

    def roots(self, record_ids: Iterable[str]) -> dict[str, str]:
        """The customer each record's touchpoints belong to: its root if linked, else itself."""
        wanted = sorted(set(record_ids))
        found = {r: r for r in wanted}
        for chunk in chunks(wanted):
            for row in self.query(
                f"SELECT record_id, root FROM {self.table('identities')} WHERE record_id IN ({self.dialect.marks(len(chunk))})",
                chunk,
            ):
                found[row["record_id"]] = row["root"]
        return found

    def any_links(self) -> bool:
        return bool(self.query(f"SELECT 1 FROM {self.table('identities')} LIMIT 1"))

    def linked_to(self, record_id: str) -> str | None:
        rows = self.query(f"SELECT linked_to FROM {self.table('identities')} WHERE record_id = ?", [record_id])
        return rows[0]["linked_to"] if rows else None

    def linked_below(self, record_id: str) -> list[str]:
        """The records linked to this one, directly or through others."""
        found: set[str] = set()
        frontier = [record_id]
        while frontier:
            rows = self.query(
                f"SELECT record_id FROM {self.table('identities')} WHERE linked_to IN ({self.dialect.marks(len(frontier))})",
                frontier,
            )
            frontier = [r["record_id"] for r in rows if r["record_id"] not in found]
            found.update(frontier)
        return sorted(found)
