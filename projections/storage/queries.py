"""Queries of the read models: an instance and its stages, touchpoints and stage history,
revisions, segments of instances by stage, and the stage summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from journeys.playbook import Scope
from journeys.storage.tables import parse_ts, ts
from projections.storage.derivation import DerivationReads
from projections.storage.rows import chunks, revision_from_row, touchpoint_from_row, transition_from_row
from projections.storage.schema import SUBJECT_COLUMN


class Queries(DerivationReads):
    def revisions_of(self, scope: Scope, subjects: Sequence[str]) -> list[dict[str, Any]]:
        """The revisions of instances' histories, in the order they were made."""
        found = []
        for chunk in chunks(list(subjects)):
            found += self.query(
                f"SELECT * FROM {self.table('revisions')} WHERE scope = ? AND subject IN ({', '.join('?' * len(chunk))})",
                [scope.value, *chunk],
            )
        return [revision_from_row(row) for row in sorted(found, key=lambda r: r["seq"])]

    # -- queries ----------------------------------------------------------------

    def customer(self, record_id: str) -> dict[str, Any] | None:
        """A customer record: its stages, touchpoint count, sealed key and erasure."""
        return self.subject(Scope.customer, record_id)

    def subject(self, scope: Scope, subject: str) -> dict[str, Any] | None:
        rows = self.query(
            f"SELECT * FROM {self.table('subjects')} WHERE scope = ? AND subject = ?", [scope.value, subject]
        )
        if not rows:
            return None
        return self._members(scope, rows)[0]

    def _members(self, scope: Scope, rows: list[Any]) -> list[dict[str, Any]]:
        """Subject rows with their stages (and, for customers, sealed key and erasure)."""
        subjects = [r["subject"] for r in rows]
        positions = self.positions_of(subjects, scope)
        facts: dict[str, Any] = {}
        if scope is Scope.customer:
            for chunk in chunks(subjects):
                marks = ", ".join("?" * len(chunk))
                for row in self.query(f"SELECT * FROM {self.table('customers')} WHERE record_id IN ({marks})", chunk):
                    facts[row["record_id"]] = row
        out = []
        for row in rows:
            fact = facts.get(row["subject"])
            out.append({
                "record_id": row["subject"],
                "subject": row["subject"],
                "stages": self.stages_of(scope, positions.get(row["subject"], []), row),
                "touchpoint_count": row["touchpoint_count"],
                "sealed_key": fact["sealed_key"] if fact else None,
                "erased_at": parse_ts(fact["erased_at"]) if fact else None,
            })
        return out

    def touchpoints_of(self, record_id: str) -> list[dict[str, Any]]:
        """A customer record's touchpoints in occurred order."""
        return self.touchpoints_where("record_id", record_id)

    def touchpoints_where(self, column: str, value: str) -> list[dict[str, Any]]:
        """The touchpoints carrying a key (record, deal, account or case), in occurred order."""
        if column not in {*SUBJECT_COLUMN.values(), "record_id"}:
            raise ValueError(f"not a subject column: {column}")
        rows = self.query(
            f"SELECT * FROM {self.table('touchpoints')} WHERE {column} = ? ORDER BY occurred_at, touchpoint_id",
            [value],
        )
        return sorted((touchpoint_from_row(row) for row in rows), key=lambda t: (t["occurred_at"], t["touchpoint_id"]))

    def transitions_of(
        self, subject: str, since: datetime | None = None, scope: Scope = Scope.customer
    ) -> list[dict[str, Any]]:
        """An instance's stage history in occurred order (from `since` on, if given)."""
        rows = self.query(
            f"SELECT * FROM {self.table('transitions')} WHERE scope = ? AND subject = ? AND occurred_at >= ? "
            "ORDER BY occurred_at, touchpoint_id",
            [scope.value, subject, ts(since) or ""],
        )
        order = {j: i for i, j in enumerate(self.playbook.journeys)}
        found = [transition_from_row(row) for row in rows]
        return sorted(found, key=lambda t: (t["at"], t["touchpoint_id"], order.get(t["journey"], len(order))))

    def segment(
        self, filters: dict[str, str | None], after: str | None, limit: int, scope: Scope = Scope.customer,
        since_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Instances of a scope in the given stages (None: journey not started), in subject order;
        with `since_before`, only those in the first filter's stage since before then."""
        positions, subjects = self.table("positions"), self.table("subjects")
        joins, where, params = [], [], []
        items = list(filters.items())
        if items:
            base = f"{positions} p0"
            for n, (journey, stage) in enumerate(items):
                condition = f"p{n}.journey = ? AND " + (f"p{n}.stage IS NULL" if stage is None else f"p{n}.stage = ?")
                values: list[Any] = [journey] + ([] if stage is None else [stage])
                if n == 0:
                    if since_before is not None:
                        condition += " AND p0.since < ?"
                        values.append(ts(since_before))
                    where.append(condition)
                    params_where = values
                else:
                    joins.append(f"JOIN {positions} p{n} ON p{n}.subject = p0.subject AND {condition}")
                    params += values
            params += params_where
            key = "p0.subject"
        else:
            base = f"{subjects} p0"
            where.append("p0.scope = ?")
            params.append(scope.value)
            key = "p0.subject"
        if scope is Scope.customer:
            joins.append(f"JOIN {self.table('customers')} c ON c.record_id = {key} AND c.erased_at IS NULL")
        if items:  # the subject rows themselves, in the same query
            joins.append(f"JOIN {subjects} s ON s.scope = ? AND s.subject = {key}")
            params = [*params[: len(params) - len(params_where)], scope.value, *params_where]
            columns = "s.*"
        else:
            columns = "p0.*"
        if after is not None:
            # The bound on every joined key, not only the first: otherwise PostgreSQL may
            # merge-join by scanning the customers' key from its start at every page.
            bounded = [key] + (["c.record_id"] if scope is Scope.customer else []) + (["s.subject"] if items else [])
            where += [f"{column} > ?" for column in bounded]
            params += [after] * len(bounded)
        rows = self.query(
            f"SELECT {columns} FROM {base} {' '.join(joins)} WHERE {' AND '.join(where)} ORDER BY {key} LIMIT ?",
            [*params, limit],
        )
        return self._members(scope, rows) if rows else []
