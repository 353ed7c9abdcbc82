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
        _key_column(column)
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
        return self.in_history_order(transition_from_row(row) for row in rows)

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

    # -- history pages: the cost of the page, not of the instance's history ------------

    def touchpoints_page(self, column: str, value: str, after: tuple[str, str, str] | None, limit: int) -> list[dict[str, Any]]:
        """The touchpoints carrying a key, in (occurred, touchpoint id, record) order, after a
        cursor's key: a range of the (key, occurred_at) index."""
        _key_column(column)
        bound, params = "", [value]
        if after is not None:
            bound = (" AND (occurred_at > ? OR occurred_at = ? AND (touchpoint_id > ? "
                     "OR touchpoint_id = ? AND record_id > ?))")
            params += [after[0], after[0], after[1], after[1], after[2]]
        rows = self.query(
            f"SELECT * FROM {self.table('touchpoints')} WHERE {column} = ?{bound} "
            "ORDER BY occurred_at, touchpoint_id, record_id LIMIT ?",
            [*params, limit],
        )
        return [touchpoint_from_row(row) for row in rows]

    def contacts_of(self, column: str, value: str) -> list[dict[str, Any]]:
        """Per record whose touchpoints carry the key: how many, the first and the last occurred time."""
        _key_column(column)
        rows = self.query(
            f"SELECT record_id, COUNT(*) AS n, MIN(occurred_at) AS first, MAX(occurred_at) AS last "
            f"FROM {self.table('touchpoints')} WHERE {column} = ? GROUP BY record_id",
            [value],
        )
        return [{"record_id": r["record_id"], "touchpoints": int(r["n"]), "first": parse_ts(r["first"]),
                 "last": parse_ts(r["last"])} for r in rows]

    def _caused(self, column: str) -> str:
        """FROM and WHERE of the touchpoints carrying a key (`t`) joined to the customer transitions
        each caused (`x`); its parameters: the customer scope, then the key's value."""
        return (f"{self.table('touchpoints')} t JOIN {self.table('transitions')} x ON x.scope = ? "
                "AND x.subject = t.record_id AND x.occurred_at = t.occurred_at AND x.touchpoint_id = t.touchpoint_id "
                f"WHERE t.{_key_column(column)} = ?")

    def transitions_caused(self, column: str, value: str, instance: tuple[Scope, str] | None = None,
                           between: tuple[datetime, datetime] | None = None) -> list[dict[str, Any]]:
        """The stage transitions caused by the touchpoints carrying a key: the contacts' own
        (customer scope, by record) and the `instance`'s (a deal, an account, a case) when given;
        only those that occurred `between` two times when given (a page's first and last touchpoint)."""
        window, params = "", []
        if between is not None:
            window = " AND t.occurred_at >= ? AND t.occurred_at <= ?"
            params = [ts(between[0]), ts(between[1])]
        rows = self.query(f"SELECT x.*, t.record_id AS cause FROM {self._caused(column)}{window}",
                          [Scope.customer.value, value, *params])
        order = {j: i for i, j in enumerate(self.playbook.journeys)}

        def ordered(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(found, key=lambda t: (t["at"], t["touchpoint_id"], order.get(t["journey"], len(order))))

        found = ordered([{**transition_from_row(r), "scope": Scope.customer.value, "subject": None, "cause": r["cause"]}
                         for r in rows])
        if instance is not None:  # after the contacts' own, as a page lists them
            scope, subject = instance
            window = " AND occurred_at >= ? AND occurred_at <= ?" if between is not None else ""
            rows = self.query(f"SELECT * FROM {self.table('transitions')} WHERE scope = ? AND subject = ?{window}",
                              [scope.value, subject, *params])
            found += ordered([{**transition_from_row(r), "scope": scope.value, "subject": subject, "cause": r["record_id"]}
                              for r in rows])
        return found

    def stages_reached(self, column: str, value: str, instance: tuple[Scope, str] | None = None) -> list[dict[str, Any]]:
        """Per journey and stage entered by the touchpoints carrying a key (the contacts' journeys
        and the `instance`'s when given): whether any of those entries was a restart."""
        rows = self.query(f"SELECT x.journey, x.to_stage, MAX(x.is_restart) AS restarted FROM {self._caused(column)} "
                          "GROUP BY x.journey, x.to_stage", [Scope.customer.value, value])
        found = [{"scope": Scope.customer.value, **dict(r)} for r in rows]
        if instance is not None:
            scope, subject = instance
            rows = self.query(
                f"SELECT journey, to_stage, MAX(is_restart) AS restarted FROM {self.table('transitions')} "
                "WHERE scope = ? AND subject = ? GROUP BY journey, to_stage",
                [scope.value, subject],
            )
            found += [{"scope": scope.value, **dict(r)} for r in rows]
        return found

    def sealed_keys(self, record_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Records' sealed customer keys (None: erased), by record id, in one query per chunk."""
        found: list[dict[str, Any]] = []
        for chunk in chunks(sorted(set(record_ids))):
            found += [dict(r) for r in self.query(
                f"SELECT record_id, sealed_key FROM {self.table('customers')} "
                f"WHERE record_id IN ({self.dialect.marks(len(chunk))})", chunk)]
        return found


def _key_column(column: str) -> str:
    """A touchpoint column that names an instance (a record, a customer, a deal, an account or a
    case): checked, as it is written into statements."""
    if column not in {*SUBJECT_COLUMN.values(), "record_id"}:
        raise ValueError(f"not a subject column: {column}")
    return column
