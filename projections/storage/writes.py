"""The projection's writes: one batch's touchpoints, stage histories, positions, counters,
revisions, links and erasures, with the position it reached, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking

from journeys.playbook import Scope
from journeys.storage.tables import parse_ts, ts
from projections.partition import InstanceChanged, lock_key
from projections.storage.changes import GenerationChanged, IdentityChange, SubjectChange
from projections.storage.counters import Counters
from projections.storage.credits import CreditCounters
from projections.storage.rows import (
    TRANSITION_KEY,
    by_scope,
    combination,
    erased_row,
    marks_of,
    outbox_row,
    position_row,
    revision_row,
    stored_transition_row,
    subject_row,
    touchpoint_row,
    transition_from_row,
    transition_row,
)
from projections.storage.schema import CUSTOMERS, POSITIONS, REVISIONS, STAGE_CHANGES, SUBJECTS, TOUCHPOINTS, TRANSITIONS
from projections.storage.stays import FIRST, LAST, Deltas, ended_of_row
from projections.storage.tags import TagCounters


def _difference(stored: list[list[Any]], derived: list[list[Any]]) -> tuple[list[list[Any]], list[list[Any]]]:
    """Of a span's stored rows and the rows derived for it: those to delete and those to insert
    (a row in both is kept as it is). A late touchpoint leaves about half of the span unchanged."""
    both = {tuple(r) for r in stored} & {tuple(r) for r in derived}
    return [r for r in stored if tuple(r) not in both], [r for r in derived if tuple(r) not in both]


class ProjectionWrites(Counters, TagCounters, CreditCounters):
    def write(
        self,
        touchpoints: Sequence[dict[str, Any]],
        changes: Iterable[SubjectChange],
        tracking: Tracking,
        registered: dict[str, str] | None = None,
        erasures: Sequence[tuple[str, datetime]] = (),
        publish: bool = True,
        identity: IdentityChange | None = None,
        checked: bool = False,
    ) -> None:
        """Store one processed batch and the position it reached, atomically. `checked`: only if
        no instance changed since the batch read it (projection parts: InstanceChanged if one did)."""
        changes = list(changes)
        fingerprint = self.playbook.fingerprint
        # The rows first: SQLite holds its write lock (which a writer in another process waits
        # for) from the transaction's first statement to its commit, so nothing that needs no
        # database is done inside it.
        per: dict[tuple[str, str], Deltas] = {}  # each instance's stays: the tags' counters need them apart
        rows = [touchpoint_row(t) for t in touchpoints]
        transitions, gone = [], []
        # A new instance has no subject or position rows yet: its rows are inserted (COPY on
        # PostgreSQL), not upserted (a third of a first-touch batch's projection was the upsert of
        # positions). Projection parts check that no other part made it meanwhile (`_hold`).
        subjects: dict[bool, list[list[Any]]] = {True: [], False: []}  # by whether the instance is new
        positions: dict[bool, list[list[Any]]] = {True: [], False: []}
        for ch in changes:
            subjects[ch.before is None].append(subject_row(ch))
            positions[ch.before is None] += [position_row(ch, j, fingerprint) for j in ch.changed]
            stays = per.setdefault((ch.scope.value, ch.subject), Deltas())
            added = [transition_row(ch, t, fingerprint) for t in ch.transitions]
            if ch.replaced is not None:  # a span read: what the derivation left as it was stays
                removed, added = _difference([stored_transition_row(ch, t) for t in ch.replaced], added)
                stays.ended((ended_of_row(r) for r in removed), -1)
                gone += [[r[i] for i in TRANSITION_KEY] for r in removed]
            stays.ended((ended_of_row(r) for r in added), 1)
            transitions += added
            for j in ch.changed:
                stays.moved(j, ch.before.positions.get(j) if ch.before else None, ch.stages.positions.get(j))
        revisions = [revision_row(ch.scope, ch.subject, ch.revision, fingerprint) for ch in changes if ch.revision]
        outbox = [*(outbox_row(ch, t) for ch in changes for t in ch.new_transitions),
                  *(erased_row(record_id, at) for record_id, at in erasures)] if publish else []
        fresh = {(ch.scope.value, ch.subject) for ch in changes if ch.before is None and ch.replace_from is None}
        with self.datastore.transaction(commit=True) as c:
            self.dialect.before_write(c)
            if not self.building:
                self._claim(c)  # a rebuild may have switched generations since this batch was read
            # Tracking first: a concurrent runner that got here first makes this fail.
            self._insert_tracking(c, tracking)
            if checked:
                self._hold(c, changes)
            credited = self.credit_before(c, rows, changes, identity, live=publish)
            if identity is not None:
                self._relink(c, identity, per)
            self.insert(c, TOUCHPOINTS, rows, "ON CONFLICT (record_id, touchpoint_id) DO NOTHING")
            self.insert(c, CUSTOMERS, [[r, k, None] for r, k in (registered or {}).items()],
                        "ON CONFLICT (record_id) DO NOTHING")
            # Spans of history replaced unread go whole, before the rows that replace them.
            unread = [ch for ch in changes if ch.replace_from is not None and ch.replaced is None]
            spans = [(ch.scope.value, ch.subject, ts(ch.replace_from) or FIRST, ts(ch.replace_until) or LAST) for ch in unread]
            for ch, removed in zip(unread, self.deleted_spans(c, spans), strict=True):
                per[(ch.scope.value, ch.subject)].ended(removed, -1)
            self.delete_keys(c, TRANSITIONS, gone)
            self.insert(c, TRANSITIONS, transitions)
            for table, rows_by in ((SUBJECTS, subjects), (POSITIONS, positions)):
                self.insert(c, table, rows_by[True])
                self.upsert(c, table, rows_by[False])
            self.add_counts(c, self._deltas(changes))
            self.insert(c, REVISIONS, revisions)
            self.erase_sealed(c, erasures)
            total = Deltas()
            for stays in per.values():
                total.add(stays)
            self.add_stays(c, total, self.tagged(c, per, rows, identity is not None, fresh))
            self.credit_after(c, credited)
            if outbox:
                self._publish(c, outbox)

    def _publish(self, c: Any, rows: list[list[Any]]) -> None:
        """Add to the outbox. Its numbers must follow the order batches commit in, or a publisher
        that has passed a number would never see a row numbered below it that commits later: they
        do, because the batches of the live generation commit one at a time (`_claim` updates its
        row, which on PostgreSQL holds the row's lock until the commit, even with projection
        parts; SQLite has one writer). tests/integration/test_partitions.py checks it."""
        self.insert(c, STAGE_CHANGES, rows)

    def _hold(self, c: Any, changes: list[SubjectChange]) -> None:
        """Lock the batch's instances against the other parts, then make sure each still has the
        touchpoint count the batch read (see projections/partition.py)."""
        read = {(ch.scope.value, ch.subject): ch.read_count for ch in changes}
        self.dialect.lock(c, sorted(lock_key(scope, subject) for scope, subject in read))
        stored: dict[tuple[str, str], int] = {}
        for scope, chunk in by_scope(read):
            stored.update(((scope, r["subject"]), r["touchpoint_count"]) for r in self.rows_of(
                self.table("subjects"), "subject", chunk, "x.scope = ?", [scope], "x.subject, x.touchpoint_count", c))
        changed = sorted(key for key, count in read.items() if stored.get(key, 0) != count)
        if changed:
            raise InstanceChanged(f"{len(changed)} instances changed since the batch read them, {changed[0]} first")

    def _relink(self, c: Any, change: IdentityChange, per: dict[tuple[str, str], Deltas]) -> None:
        """Apply a link or an unlink: the links, the customer of the touchpoints, and the
        customer subjects that are no more (their stages and stays counted out)."""
        identities, touchpoints = self.table("identities"), self.table("touchpoints")
        if change.unlinked is not None:
            self.run(c, f"DELETE FROM {identities} WHERE record_id = ?", [change.unlinked])
        if change.linked is not None:
            self.run(c, f"INSERT INTO {identities} (record_id, linked_to, root) VALUES (?, ?, ?)", list(change.linked))
        for record_id, root in sorted(change.roots.items()):
            self.run(c, f"UPDATE {identities} SET root = ? WHERE record_id = ?", [root, record_id])
            self.run(c, f"UPDATE {touchpoints} SET customer = ? WHERE record_id = ?", [root, record_id])
        deltas: dict[tuple[str, str], int] = {}
        for subject, stages in change.removed:
            stays = per.setdefault((Scope.customer.value, subject), Deltas())
            for table in ("positions", "subjects"):
                self.run(c, f"DELETE FROM {self.table(table)} WHERE scope = ? AND subject = ?",
                          [Scope.customer.value, subject])
            stays.ended(self.deleted_spans(c, [(Scope.customer.value, subject, FIRST, LAST)])[0], -1)
            for journey, position in stages.positions.items():
                stays.moved(journey, position, None)
            key = (Scope.customer.value, combination(self.playbook, Scope.customer, marks_of(stages)))
            deltas[key] = deltas.get(key, 0) - 1
        self.add_counts(c, deltas)

    def _deltas(self, changes: list[SubjectChange]) -> dict[tuple[str, str], int]:
        """How the batch moves instances between combinations of stages."""
        deltas: dict[tuple[str, str], int] = {}
        for ch in changes:
            if ch.before is not None and not ch.changed:
                continue
            after = (ch.scope.value, combination(self.playbook, ch.scope, marks_of(ch.stages)))
            deltas[after] = deltas.get(after, 0) + 1
            if ch.before is not None:
                before = (ch.scope.value, combination(self.playbook, ch.scope, marks_of(ch.before)))
                deltas[before] = deltas.get(before, 0) - 1
        return deltas

    def erase_sealed(self, c: Any, erasures: Sequence[tuple[str, datetime]]) -> None:
        """Blank what personal data (sealed) the view holds of erased records; keep their stages."""
        for record_id, at in erasures:
            self.run(c, f"INSERT INTO {self.table('customers')} (record_id, sealed_key, erased_at) VALUES (?, NULL, ?) "
                        "ON CONFLICT (record_id) DO UPDATE SET sealed_key = NULL, erased_at = excluded.erased_at",
                     [record_id, ts(at)])
            self.run(c, f"UPDATE {self.table('touchpoints')} SET sealed = NULL WHERE record_id = ?", [record_id])

    def _claim(self, c: Any) -> None:
        """In a batch's transaction: fail if this view's generation is no longer the live one."""
        claimed = self.run(c, f"UPDATE {self.table('generations')} SET state = state WHERE generation = ? AND state = 'live'",
                           [self.generation])
        if claimed != 1:
            raise GenerationChanged(f"generation {self.generation} of the read models is no longer the live one")

    def stage_changes_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """The outbox of stage transitions (and erasures), in the order they were derived."""
        rows = self.query(
            f"SELECT * FROM {self.table('stage_changes')} WHERE seq > ? ORDER BY seq LIMIT ?", [seq, limit]
        )
        return [
            {**(transition_from_row(row) if row["kind"] != "erased" else {"at": parse_ts(row["occurred_at"])}),
             "seq": row["seq"], "scope": row["scope"], "subject": row["subject"], "kind": row["kind"],
             "awareness_stage": row["awareness_stage"]}
            for row in rows
        ]
