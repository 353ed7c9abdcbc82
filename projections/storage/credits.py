"""Credit and lead counters: attribution and leads by the day, kept by the projection in each
batch's transaction, so all-time attribution and cost read days, not every advance and touch.

An advance (a transition into a stage, not a restart) gives its credit to the campaign touches
of its instance up to it (projections/attribution.py). `credit_days` holds, per journey, stage
entered, day of the advance and model, each campaign's and channel's credit in billionths;
`advance_days` the advances and those no campaign touched; `lead_days` the lead-funnel entries
(seed 001) by the day they occurred and the campaign and channel of the touchpoint that made
them, with how many converted and became customers since.

A batch changes the credit of the advances it adds or deletes, and of the advances at or after
a campaign touch it adds (they now count it); and the leads of the customers whose lead or
customer journey it changes. Its transaction subtracts the credit of the advances a late
touchpoint took out (read from the change's revision) and of the stored advances from the
earliest such campaign touch on, as they stand before its writes, then adds the credit of those
it put in and of the advances from that touch on, as they stand after; leads likewise
(`credit_before`, `credit_after`). In-order appends read nothing before. So the counters always
equal a recount (`recount_credits`, and the tests that compare them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from journeys.playbook import Scope
from journeys.storage.tables import ts
from projections.attribution import credited, split
from projections.storage.base import ReadModelStore
from projections.storage.changes import IdentityChange, SubjectChange
from projections.storage.rows import chunks
from projections.storage.schema import ADVANCE_DAYS, CREDIT_DAYS, CREDIT_TABLES, LEAD_DAYS, SUBJECT_COLUMN, TOUCHPOINTS

Advance = tuple[str, str, str, str]  # (occurred_at, subject, journey, stage entered): text as stored
Touch = tuple[str, str, str, str | None]  # (occurred_at, touchpoint_id, campaign, channel) of a campaign touch
ADVANCED = "x.is_restart = 0 AND x.to_stage IS NOT NULL"  # a transition that is an advance
_AT = {name: TOUCHPOINTS.names.index(name) for name in ("occurred_at", "campaign", *SUBJECT_COLUMN.values())}


class CreditDeltas:
    """What some advances and lead-funnel entries add to the counters (or, subtracted, take away)."""

    def __init__(self) -> None:
        self.credits: dict[tuple[str, ...], int] = {}  # (journey, stage, day, model, kind, name) -> billionths
        self.advances: dict[tuple[str, str, str], list[int]] = {}  # (journey, stage, day) -> [advances, unattributed]
        self.leads: dict[tuple[str, str, str], list[int]] = {}  # (day, campaign, channel) -> [leads, converted, customers]

    def advanced(self, journey: str, stage: str, day: str, parts: dict[tuple[str, str, str], int]) -> None:
        counted = self.advances.setdefault((journey, stage, day), [0, 0])
        counted[0] += 1
        counted[1] += 0 if parts else 1
        for (model, kind, name), credit in parts.items():
            key = (journey, stage, day, model, kind, name)
            self.credits[key] = self.credits.get(key, 0) + credit

    def add(self, other: CreditDeltas, sign: int = 1) -> None:
        for key, credit in other.credits.items():
            self.credits[key] = self.credits.get(key, 0) + sign * credit
        for mine, theirs in ((self.advances, other.advances), (self.leads, other.leads)):
            for key, counts in theirs.items():
                found = mine.setdefault(key, [0] * len(counts))
                for i, n in enumerate(counts):
                    found[i] += sign * n

    def rows(self) -> list[tuple[Any, list[list[Any]]]]:
        """(table, rows adding these deltas to it): none that add nothing."""
        return [
            (CREDIT_DAYS, [[*key, n] for key, n in sorted(self.credits.items()) if n]),
            (ADVANCE_DAYS, [[*key, *counts] for key, counts in sorted(self.advances.items()) if any(counts)]),
            (LEAD_DAYS, [[*key, *counts] for key, counts in sorted(self.leads.items()) if any(counts)]),
        ]


@dataclass
class Credited:
    """What a batch re-credits (see the module): its state before the batch's writes."""

    since: dict[tuple[str, str], str]  # (scope, subject) -> its stored advances from this occurred time on
    customers: list[str]  # whose lead-funnel entries are counted again
    before: CreditDeltas = field(default_factory=CreditDeltas)
    added: dict[str, list[Advance]] = field(default_factory=dict)  # per scope: put in, before `since`


class CreditCounters(ReadModelStore):
    # -- what a batch changes ---------------------------------------------------------------

    def credit_before(self, c: Any, touchpoints: Sequence[Sequence[Any]], changes: Sequence[SubjectChange],
                      identity: IdentityChange | None, live: bool = True) -> Credited:
        """Before a batch's writes (touchpoint rows as written): which advances and leads it may
        change, and what they count now. `live`: the changes say what a late touchpoint removed
        from and added to the history (their revisions; a rebuild compares nothing)."""
        since: dict[tuple[str, str], str] = {}

        def from_(key: tuple[str, str], at: str) -> None:
            if key not in since or at < since[key]:
                since[key] = at

        changed = {(ch.scope.value, ch.subject): ch for ch in changes}
        customers: set[str] = set()
        if identity is not None:  # touchpoints move between customers: all of theirs again
            customers = self._relinked(c, identity) | {s for scope, s in changed if scope == Scope.customer.value}
            for subject in customers:
                from_((Scope.customer.value, subject), "")
        rewritten = {key: _rewritten(ch, live) for key, ch in changed.items()}
        for key, ch in changed.items():
            if rewritten[key] is None:
                from_(key, ts(ch.replace_from) or "")
        for row in touchpoints:
            if row[_AT["campaign"]] is None:
                continue
            at = row[_AT["occurred_at"]]
            for scope, column in SUBJECT_COLUMN.items():
                key = (scope.value, row[_AT[column]])
                if key[1] is None:
                    continue
                appended = changed.get(key)
                if appended is not None and appended.replace_from is None and (
                        appended.before is None or appended.before.last_key is None
                        or at > (ts(appended.before.last_key[0]) or "")):
                    continue  # after every stored touchpoint of the instance: no stored advance counts it
                from_(key, at)
        funnel = self.playbook.leads
        if funnel.journey in self.playbook.journeys:
            kept = {funnel.journey, funnel.customers}
            for key, ch in changed.items():
                if ch.scope is not Scope.customer:
                    continue
                journeys = ({t.journey for t in ch.transitions} if ch.replace_from is None
                            else None if rewritten[key] is None else {j for _, j, _, _ in rewritten[key] or ()})
                if journeys is None or journeys & kept:
                    customers.add(ch.subject)
        state = Credited(since, sorted(customers))
        found = self._advances_since(c, since)
        for key, ch in changed.items():  # the advances it takes out or puts in before `since` (the rest are found)
            put_in = ([(ts(t.at) or "", t.journey, None if t.restart else t.to_stage, False) for t in ch.transitions]
                      if ch.replace_from is None else rewritten[key] or ())
            for at, journey, stage, removed in put_in:
                if stage is not None and (key not in since or at < since[key]):
                    (found if removed else state.added).setdefault(key[0], []).append((at, key[1], journey, stage))
        for of, advances in found.items():
            self.credit(c, of, advances, state.before)
        # A customer new in this batch has no lead-funnel entries stored yet: nothing to count before.
        new = set() if identity is not None else {
            ch.subject for ch in changes if ch.scope is Scope.customer and ch.before is None}
        state.before.leads = self.lead_counts(c, [s for s in state.customers if s not in new])
        return state

    def credit_after(self, c: Any, state: Credited) -> None:
        """After a batch's writes: add what its advances and leads count now, less what they did."""
        found = self._advances_since(c, state.since)
        for of, advances in state.added.items():
            found.setdefault(of, []).extend(advances)
        after = CreditDeltas()
        for scope, advances in found.items():
            self.credit(c, scope, advances, after)
        after.leads = self.lead_counts(c, state.customers)
        after.add(state.before, -1)
        self.add_credit_rows(c, after.rows())

    def _relinked(self, c: Any, identity: IdentityChange) -> set[str]:
        """The customers a link or an unlink moves touchpoints out of or into."""
        found = set(identity.roots.values()) | set(identity.roots) | {subject for subject, _ in identity.removed}
        for chunk in chunks(sorted(identity.roots)):
            c.execute(self.dialect.sql(f"SELECT DISTINCT customer FROM {self.table('touchpoints')} "
                                       f"WHERE record_id IN ({self.dialect.marks(len(chunk))})"), chunk)
            found |= {r["customer"] for r in c.fetchall() if r["customer"] is not None}
        return found

    def _advances_since(self, c: Any, since: dict[tuple[str, str], str]) -> dict[str, list[Advance]]:
        """Per scope, the stored advances of these instances at or after each one's time."""
        found: dict[str, list[Advance]] = {}
        for scope in sorted({scope for scope, _ in since}):
            wanted = sorted([subject, at] for (s, subject), at in since.items() if s == scope)
            for chunk in chunks(wanted):
                values, params = self.dialect.values("p", [("subject", "text"), ("since", "text")], chunk)
                each = self.dialect.join_each("p", self.table("transitions"), "x", (
                    f"x.scope = '{Scope(scope).value}' AND x.subject = p.subject AND x.occurred_at >= p.since AND {ADVANCED}"))
                c.execute(f"{values} SELECT x.occurred_at, x.subject, x.journey, x.to_stage FROM {each}", params)
                found.setdefault(scope, []).extend(_advance(r) for r in c.fetchall())
        return found

    # -- the credit of advances, the counts of leads -----------------------------------------

    def credit(self, c: Any, scope: str, advances: Iterable[Advance], into: CreditDeltas) -> None:
        """Add these advances of one scope's instances, credited from the campaign touches stored now."""
        by_subject: dict[str, list[Advance]] = {}
        for advance in advances:
            by_subject.setdefault(advance[1], []).append(advance)
        column = SUBJECT_COLUMN[Scope(scope)]
        for chunk in chunks(sorted(by_subject)):
            values, params = self.dialect.values(
                "p", [("subject", "text"), ("until", "text")], [[s, max(a[0] for a in by_subject[s])] for s in chunk])
            each = self.dialect.join_each("p", self.table("touchpoints"), "t", (
                f"t.{column} = p.subject AND t.occurred_at <= p.until AND t.campaign IS NOT NULL"))
            c.execute(f"{values} SELECT p.subject, t.occurred_at, t.touchpoint_id, t.campaign, t.channel FROM {each}",
                      params)
            touches: dict[str, list[Touch]] = {}
            for r in c.fetchall():
                touches.setdefault(r["subject"], []).append((r["occurred_at"], r["touchpoint_id"], r["campaign"], r["channel"]))
            for subject in chunk:
                credit_instance(touches.get(subject, []), by_subject[subject], into)

    def lead_counts(self, c: Any, customers: Sequence[str] | None = None, window: str = "",
                    params: Sequence[Any] = ()) -> dict[tuple[str, str, str], list[int]]:
        """(day, campaign, channel) -> [leads, converted, customers] of these customers' lead-funnel
        entries (None: every customer's) that occurred in the window (a condition on e.occurred_at)."""
        funnel = self.playbook.leads
        if funnel.journey not in self.playbook.journeys or customers == []:
            return {}
        transitions, touchpoints = self.table("transitions"), self.table("touchpoints")
        converted = self.playbook.journeys[funnel.journey].last
        became_customers = self.playbook.journeys.get(funnel.customers)
        # `|| ''` keeps the planners off the entries index (journey, to_stage, occurred_at), which
        # reads every customer's entries into a stage: the primary key (scope, subject, ...) reads
        # one customer's (SQLite took the former, 25 ms a batch at 5,000 customers and growing).
        became = (f"EXISTS (SELECT 1 FROM {transitions} c WHERE c.scope = e.scope AND c.subject = e.subject "
                  "AND c.occurred_at >= e.occurred_at AND c.journey || '' = ? AND c.to_stage || '' = ?)")
        became_params = [funnel.journey, converted, funnel.customers, became_customers.stages[0] if became_customers else ""]
        entries = "e.scope = 'customer' AND e.from_stage IS NULL AND e.to_stage IS NOT NULL"
        found: dict[tuple[str, str, str], list[int]] = {}
        for chunk in [None] if customers is None else chunks(list(customers)):
            listed: list[Any] = []
            if chunk is None:
                with_ = ""
                source, where = f"{transitions} e", f"WHERE {entries} AND e.journey = ?{window}"
            else:
                # Each customer's entries by the primary key, whatever the planner's statistics say:
                # without them, PostgreSQL read every customer's transitions to find a batch's
                # (42-64 ms a batch at 100,000 touchpoints, growing with the history).
                with_, listed = self.dialect.values("p", [("subject", "text")], [[s] for s in chunk])
                source = self.dialect.join_each(
                    "p", transitions, "e", f"e.subject = p.subject AND {entries} AND e.journey || '' = ?")
                where = f"WHERE TRUE{window}" if window else ""
            # Parameters in the statement's order: the customers listed, the EXISTS, the journey, the window.
            for r in self._rows(c,
                f"{with_} SELECT substr(e.occurred_at, 1, 10) AS day, t.campaign, t.channel, COUNT(*) AS n, "
                f"SUM(CASE WHEN {became} THEN 1 ELSE 0 END) AS converted, "
                f"SUM(CASE WHEN {became} THEN 1 ELSE 0 END) AS customers "
                f"FROM {source} JOIN {touchpoints} t ON t.record_id = e.record_id AND t.touchpoint_id = e.touchpoint_id "
                f"{where} GROUP BY substr(e.occurred_at, 1, 10), t.campaign, t.channel",
                [*listed, *became_params, funnel.journey, *params],
            ):
                counts = found.setdefault((r["day"], r["campaign"] or "", r["channel"] or ""), [0, 0, 0])
                for i, n in enumerate((r["n"], r["converted"], r["customers"])):
                    counts[i] += int(n or 0)
        return found

    def credit_where(self, where: str, params: Sequence[Any], into: CreditDeltas) -> None:
        """Add the advances a condition on the transitions (`x`) selects, credited from the
        campaign touches stored now."""
        with self.datastore.transaction(commit=False) as c:
            for scope, advances in self._advances(c, where, params).items():
                self.credit(c, scope, advances, into)

    def leads_where(self, window: str, params: Sequence[Any]) -> dict[tuple[str, str, str], list[int]]:
        """`lead_counts` of every customer's lead-funnel entries in a window (a condition on e.occurred_at)."""
        with self.datastore.transaction(commit=False) as c:
            return self.lead_counts(c, None, window, params)

    def _advances(self, c: Any, where: str, params: Sequence[Any]) -> dict[str, list[Advance]]:
        """Per scope, the advances a condition on the transitions (`x`) selects."""
        found: dict[str, list[Advance]] = {}
        for r in self._rows(c, f"SELECT x.scope, x.occurred_at, x.subject, x.journey, x.to_stage "
                               f"FROM {self.table('transitions')} x WHERE {ADVANCED} AND {where}", params):
            found.setdefault(r["scope"], []).append(_advance(r))
        return found

    def _rows(self, c: Any, statement: str, params: Sequence[Any]) -> list[Any]:
        c.execute(self.dialect.sql(statement), list(params))
        return c.fetchall()

    def add_credit_rows(self, c: Any, rows: list[tuple[Any, list[list[Any]]]], piece: int = 20_000) -> None:
        for table, found in rows:
            counted = [name for name, kind in table.columns if kind == "bigint"]
            for start in range(0, len(found), piece):
                self.accumulate(c, table, found[start : start + piece], *counted)

    def recount_credits(self) -> None:
        """Credit every advance and count every lead again (a store from before the counters, or
        rows written around the projection, as benchmarks do)."""
        deltas = CreditDeltas()
        transitions = self.table("transitions")
        with self.datastore.transaction(commit=False) as c:
            for scope in Scope:
                subjects = [r["subject"] for r in self._rows(
                    c, f"SELECT DISTINCT subject FROM {transitions} WHERE scope = ?", [scope.value])]
                for chunk in chunks(sorted(subjects)):
                    advances = self._advances(c, f"x.scope = ? AND x.subject IN ({', '.join('?' * len(chunk))})",
                                              [scope.value, *chunk])
                    self.credit(c, scope.value, advances.get(scope.value, []), deltas)
            deltas.leads = self.lead_counts(c)
        rows = deltas.rows()  # before the transaction: PostgreSQL ends one idle for long
        with self.datastore.transaction(commit=True) as c:
            for table in CREDIT_TABLES:
                c.execute(f"DELETE FROM {self.table(table.name)}")
            self.add_credit_rows(c, rows)

    # -- reads: days [first, last), "" for no bound ------------------------------------------

    def credit_days(self, journey: str, stage: str, model: str, first: str, last: str) -> CreditDeltas:
        """The credit and the advances into a stage on those days, by one model."""
        days, params = _days(first, last)
        found = CreditDeltas()
        for r in self.query(f"SELECT kind, name, SUM(credit) AS credit FROM {self.table('credit_days')} "
                            f"WHERE journey = ? AND stage = ? AND model = ?{days} GROUP BY kind, name",
                            [journey, stage, model, *params]):
            found.credits[(journey, stage, "", model, r["kind"], r["name"])] = int(r["credit"])
        for r in self.query(f"SELECT SUM(advances) AS advances, SUM(unattributed) AS unattributed "
                            f"FROM {self.table('advance_days')} WHERE journey = ? AND stage = ?{days}",
                            [journey, stage, *params]):
            found.advances[(journey, stage, "")] = [int(r["advances"] or 0), int(r["unattributed"] or 0)]
        return found

    def lead_days(self, kind: str, first: str, last: str) -> dict[str, list[int]]:
        """Campaign or channel ('' for none) -> [leads, converted, customers] of the lead-funnel
        entries on those days."""
        if kind not in ("campaign", "channel"):
            raise ValueError(f"leads by campaign or channel, not {kind!r}")
        days, params = _days(first, last)
        return {r["name"]: [int(r["leads"] or 0), int(r["converted"] or 0), int(r["customers"] or 0)]
                for r in self.query(f"SELECT {kind} AS name, SUM(leads) AS leads, SUM(converted) AS converted, "
                                    f"SUM(customers) AS customers FROM {self.table('lead_days')} WHERE 1 = 1{days} "
                                    f"GROUP BY {kind}", params)}


def credit_instance(touches: list[Touch], advances: list[Advance], into: CreditDeltas) -> None:
    """Add one instance's advances, credited from its campaign touches (any order, each given once)."""
    ordered = sorted(touches, key=lambda t: (t[0], t[1]))
    parts: dict[int, dict[tuple[str, str, str], int]] = {}  # by how many touches came before
    for (at, _, journey, stage), seen in credited(((t[0], (t[2], t[3])) for t in ordered), sorted(advances)):
        if seen.n not in parts:
            parts[seen.n] = split(seen)
        into.advanced(journey, stage, at[:10], parts[seen.n])


def _rewritten(ch: SubjectChange, live: bool) -> list[tuple[str, str, str | None, bool]] | None:
    """What a batch changes in an instance's stored history: (occurred time, journey, the stage
    entered if an advance, whether removed) of each transition a late touchpoint removed or
    added; [] for appends only; None when not known (a rebuild compares nothing), i.e.
    everything from the late touchpoint on."""
    if ch.replace_from is None:
        return []
    if ch.revision is None:
        return [] if live else None
    return [(ts(t["at"]) or "", t["journey"], None if t["restart"] else t["to_stage"], removed)
            for removed, transitions in ((True, ch.revision.removed), (False, ch.revision.added)) for t in transitions]


def _advance(row: Any) -> Advance:
    return (row["occurred_at"], row["subject"], row["journey"], row["to_stage"])


def _days(first: str, last: str) -> tuple[str, list[str]]:
    where, params = "", list[str]()
    if first:
        where, params = where + " AND day >= ?", [*params, first]
    if last:
        where, params = where + " AND day < ?", [*params, last]
    return where, params
