"""The audit trail in the database: hash chains kept, checkpoints sealed, everything verified, exports.

The hashing itself is journeys/chain.py; this module reads the stored events and
their chain rows (written by the recorders in the events' own transaction).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from journeys.chain import (
    GENESIS,
    Checkpoint,
    broken_checkpoint_link,
    content_hash,
    event_hash,
    leaf,
    merkle_proofs,
    merkle_root,
)
from journeys.storage.dialect import Dialect
from journeys.verify_export import EXPORT_FORMAT

PAGE = 5_000

Progress = Callable[[int], None]  # called with how many more events were checked


@dataclass
class Report:
    """What a verification found: the first broken link names the event; all are counted."""

    events: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    unsealed: int = 0  # events after the latest checkpoint (the root can say nothing of them yet)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "events": self.events, "records": self.records,
            "first_problem": self.problems[0] if self.problems else None,
            "problems": self.problems[:100], "problem_count": len(self.problems),
            "checkpoint": self.checkpoint.as_dict() if self.checkpoint else None,
            "unsealed": self.unsealed,
        }


class AuditTrail:
    """Chains, checkpoints, verification and export over one store.

    `db` is any object with `query(sql, params)` and `execute(sql, params)` taking '?'
    parameters on the events' database (the journey view is one); `recorder` the
    application's recorder, which names the tables.
    """

    def __init__(self, db: Any, recorder: Any, dialect: Dialect):
        self.db = db
        self.dialect = dialect
        self.events = dialect.qualified(recorder.datastore, recorder.events_table_name)
        self.nid = dialect.notification_id
        self.chain = recorder.chain_table
        self.checkpoints_table = recorder.checkpoints_table

    # -- reading the store -------------------------------------------------------------

    def _record_param(self, record: str) -> str:
        return self.dialect.uuid(record)

    def _events_page(self, after: tuple[Any, Any] | None, records: Sequence[str] | None) -> list[dict[str, Any]]:
        """A page of stored events in (record, version) order with their chain rows (or NULLs)."""
        where, params = [], []
        if after is not None:
            where.append("(e.originator_id, e.originator_version) > (?, ?)")
            params += [after[0], after[1]]
        if records is not None:
            where.append(f"e.originator_id IN ({', '.join('?' * len(records))})")
            params += [self._record_param(r) for r in records]
        rows = self.db.query(
            f"SELECT e.{self.nid} AS notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            f"c.record_id AS c_record, c.version AS c_version, c.hash AS c_hash "
            f"FROM {self.events} e LEFT JOIN {self.chain} c ON c.notification_id = e.{self.nid} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY e.originator_id, e.originator_version LIMIT ?",
            [*params, PAGE],
        )
        return [dict(row) | {"record": _record_of(row["originator_id"])} for row in rows]

    def stored_events(self, records: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        for chunk in _chunks(records):
            after = None
            while True:
                page = self._events_page(after, chunk)
                yield from page
                if len(page) < PAGE:
                    break
                after = (page[-1]["originator_id"], page[-1]["originator_version"])  # as stored, edited or not

    def count_events(self, records: Sequence[str] | None = None) -> int:
        total = 0
        for chunk in _chunks(records):
            where = f"WHERE originator_id IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            params = [self._record_param(r) for r in chunk] if chunk is not None else []
            total += self.db.query(f"SELECT COUNT(*) AS n FROM {self.events} {where}", params)[0]["n"]
        return total

    def _count_after(self, position: int, records: Sequence[str] | None) -> int:
        """How many of the events (of the records) are after a log position: not yet sealed."""
        total = 0
        for chunk in _chunks(records):
            where = f"AND record_id IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            total += self.db.query(
                f"SELECT COUNT(*) AS n FROM {self.chain} WHERE notification_id > ? {where}", [position, *(chunk or [])]
            )[0]["n"]
        return total

    def heads_at(self, position: int) -> list[tuple[str, int, str]]:
        """(record, version, hash) of every chain's last event at or before a log position, by record."""
        rows = self.db.query(
            f"SELECT c.record_id, c.version, c.hash FROM {self.chain} c JOIN ("
            f"SELECT record_id, MAX(version) AS version FROM {self.chain} WHERE notification_id <= ? GROUP BY record_id"
            ") h ON h.record_id = c.record_id AND h.version = c.version ORDER BY c.record_id",
            [position],
        )
        return [(r["record_id"], r["version"], r["hash"]) for r in rows]

    # -- checkpoints -------------------------------------------------------------------

    def checkpoints(self, latest_only: bool = False) -> list[Checkpoint]:
        """Every checkpoint in sequence order (or only the latest)."""
        rows = self.db.query(
            f"SELECT * FROM {self.checkpoints_table} ORDER BY seq" if not latest_only
            else f"SELECT * FROM {self.checkpoints_table} ORDER BY seq DESC LIMIT 1"
        )
        return [Checkpoint(**{k: row[k] for k in Checkpoint.__dataclass_fields__}) for row in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        found = self.checkpoints(latest_only=True)
        return found[0] if found else None

    def checkpoint(self) -> Checkpoint:
        """Seal the heads of all chains at the current log position (again if nothing was written since)."""
        rows = self.db.query(f"SELECT MAX(notification_id) AS position FROM {self.chain}")
        position = rows[0]["position"] or 0
        heads = self.heads_at(position)
        merkle = merkle_root([leaf(*head) for head in heads])
        previous = self.latest_checkpoint()
        seq = previous.seq + 1 if previous else 1
        prior = previous.root if previous else GENESIS
        root = Checkpoint.seal(seq, position, len(heads), merkle, prior)
        created = Checkpoint(seq, position, len(heads), merkle, prior, root, datetime.now(UTC).isoformat())
        self.db.execute(
            f"INSERT INTO {self.checkpoints_table} (seq, position, heads, merkle, previous, root, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [created.seq, created.position, created.heads, created.merkle, created.previous, created.root, created.created_at],
        )
        return created

    # -- verification ------------------------------------------------------------------

    def verify(self, records: Sequence[str] | None = None, root: str | None = None,
               progress: Progress | None = None) -> Report:
        """Recompute every chain (or those of the given records) and the checkpoints.

        Names each broken link: an event whose bytes do not match its hash (edited), a
        hash whose event is gone (deleted), a version missing from a chain, an event
        hashed elsewhere in the log (moved or swapped), one with no hash (inserted).
        Tampered rows never stop it: a value of the wrong type or NULL is named as edited.
        """
        report = Report()
        chain = _Chain()
        done = 0
        for row in self.stored_events(records):
            report.events += 1
            done += 1
            if progress is not None and done == PAGE:
                progress(done)
                done = 0
            try:
                self._verify_row(row, chain, report)
            except Exception as error:  # whatever an edit left there, it is named, never a crash
                chain.previous = row["c_hash"] if isinstance(row["c_hash"], str) else GENESIS
                report.problems.append(
                    f"notification {row['notification_id']!s:.40}: the row cannot be read ({type(error).__name__}): edited"
                )
        if progress is not None and done:
            progress(done)
        for check in (lambda: self._orphan_hashes(records), lambda: self._check_checkpoints(records, root, report)):
            try:
                report.problems += check()
            except Exception as error:
                report.problems.append(
                    f"the chain or checkpoint tables hold values that cannot be read ({type(error).__name__}): edited"
                )
        return report

    def _verify_row(self, row: dict[str, Any], chain: _Chain, report: Report) -> None:
        record, v, n = row["record"], row["originator_version"], row["notification_id"]
        if record != chain.record:
            chain.record, chain.version, chain.previous = record, 0, GENESIS
            report.records += 1
        where = f"record {record} version {v!s:.20} (notification {n!s:.20})"
        problem = _unreadable(row)
        if problem:
            report.problems.append(f"{where}: {problem}: edited")
            chain.version = v if isinstance(v, int) else chain.version + 1
            chain.previous = row["c_hash"] if isinstance(row["c_hash"], str) else chain.previous
            return
        gap = v != chain.version + 1
        if gap:  # the hash before this one is gone with its event: its link cannot be checked
            report.problems.append(
                f"record {record}: version {v} follows version {chain.version}: "
                f"{_versions(chain.version + 1, v - 1)} deleted"
            )
        chain.version = v
        digest = event_hash(chain.previous, record, v, row["topic"], bytes(row["state"]))
        stored = row["c_hash"]
        if stored is None:
            report.problems.append(f"{where}: no hash stored: inserted outside the service")
            chain.previous = digest
            return
        if (row["c_record"], row["c_version"]) != (record, v):
            report.problems.append(
                f"{where}: hashed as record {row['c_record']!s:.40} version {row['c_version']!s:.20}: moved or swapped"
            )
            stored = self._hash_of(record, v)  # its own hash, wherever its row went: the neighbours check
            if stored is None:
                chain.previous = digest
                return
        if not gap and digest != stored:
            if v == 1:
                report.problems.append(f"{where}: stored bytes do not match their hash: edited")
            else:
                report.problems.append(
                    f"{where}: does not follow from version {v - 1}'s hash: version {v} was edited, "
                    f"or version {v - 1} was edited together with its hash"
                )
        chain.previous = stored  # the stored hash, so one edit is named once

    def _hash_of(self, record: str, version: int) -> str | None:
        rows = self.db.query(f"SELECT hash FROM {self.chain} WHERE record_id = ? AND version = ?", [record, version])
        found = rows[0]["hash"] if rows else None
        return found if isinstance(found, str) else None

    def _orphan_hashes(self, records: Sequence[str] | None) -> list[str]:
        problems = []
        for chunk in _chunks(records):
            where = f"AND c.record_id IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            rows = self.db.query(
                f"SELECT c.notification_id, c.record_id, c.version FROM {self.chain} c "
                f"LEFT JOIN {self.events} e ON e.{self.nid} = c.notification_id "
                f"WHERE e.{self.nid} IS NULL {where} ORDER BY c.record_id, c.version",
                list(chunk or []),
            )
            problems += [
                f"record {r['record_id']} version {r['version']} (notification {r['notification_id']}): "
                "its hash is stored but the event is gone: deleted"
                for r in rows
            ]
        return problems

    def _check_checkpoints(self, records: Sequence[str] | None, root: str | None, report: Report) -> list[str]:
        checkpoints = self.checkpoints()
        problems = []
        broken = broken_checkpoint_link(checkpoints)
        if broken:
            problems.append(broken)
        if root is not None and root not in {c.root for c in checkpoints}:
            problems.append(
                f"the root given matches no checkpoint ({len(checkpoints)} stored): check that it is the root "
                "you kept; if it is, the checkpoints were replaced"
            )
        if root is not None:
            checkpoints = [c for c in checkpoints if c.root == root] or checkpoints
        if not checkpoints:
            report.unsealed = report.events
            return problems
        latest = checkpoints[-1]
        report.checkpoint = latest
        report.unsealed = self._count_after(latest.position, records)
        heads = self.heads_at(latest.position)
        leaves = [leaf(*head) for head in heads]
        if len(heads) != latest.heads or merkle_root(leaves) != latest.merkle:
            wanted = set(records) if records is not None else None
            named = [h[0] for h in heads if wanted is None or h[0] in wanted]
            problems.append(
                f"checkpoint {latest.seq} (position {latest.position}): the chains' heads "
                f"({len(heads)} now, {latest.heads} sealed) do not give its root: an event at or before "
                f"position {latest.position} was changed, added or deleted together with its hash"
                + (f" (records checked: {', '.join(named[:5])})" if wanted is not None else "")
            )
        return problems

    # -- export ------------------------------------------------------------------------

    def export(
        self,
        records: Sequence[str] | None,
        include: Callable[[StoredEvent], bool] = lambda _: True,
        selection: dict[str, Any] | None = None,
        checkpoint_seq: int | None = None,
    ) -> Iterator[str]:
        """JSON Lines: each stored event of the records (with its bytes, or only its hash where
        `include` says no) in chain order, then a manifest with the chains' heads, their Merkle
        proofs under a checkpoint, and every checkpoint's seal."""
        checkpoints = self.checkpoints()
        if checkpoint_seq is not None:
            chosen = next((c for c in checkpoints if c.seq == checkpoint_seq), None)
            if chosen is None:
                raise LookupError(f"no checkpoint {checkpoint_seq}")
        else:
            chosen = checkpoints[-1] if checkpoints else None
        latest: dict[str, dict[str, Any]] = {}
        line = 0
        for row in self.stored_events(records):
            line += 1
            event = StoredEvent(UUID(row["record"]), row["originator_version"], row["topic"], bytes(row["state"]))
            item: dict[str, Any] = {
                "line": line, "record": row["record"], "version": row["originator_version"],
                "notification": row["notification_id"], "hash": row["c_hash"],
            }
            if include(event):
                item |= {"topic": row["topic"], "state": base64.b64encode(event.state).decode()}
            else:  # left out: the hash of its bytes still lets every link be recomputed
                item |= {"elided": True, "content": content_hash(row["topic"], event.state)}
            latest[row["record"]] = {"version": row["originator_version"], "hash": row["c_hash"]}
            yield json.dumps(item, separators=(",", ":")) + "\n"
        sealed: dict[str, Any] = {}
        if chosen is not None:
            heads = self.heads_at(chosen.position)
            index = {head[0]: i for i, head in enumerate(heads)}
            wanted = [index[r] for r in latest if r in index]
            proofs = merkle_proofs([leaf(*head) for head in heads], wanted)
            for i in wanted:
                record, version, digest = heads[i]
                sealed[record] = {"version": version, "hash": digest, "proof": proofs[i]}
        manifest = {
            "format": EXPORT_FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "selection": selection or {"all": True},
            "events": line,
            "heads": latest,
            "checkpoint": chosen.as_dict() if chosen else None,
            "sealed_heads": sealed,
            "checkpoints": [c.as_dict() for c in checkpoints if chosen is None or c.seq <= chosen.seq],
        }
        yield json.dumps({"manifest": manifest}, separators=(",", ":")) + "\n"

    # -- a store from before the chain -------------------------------------------------

    def backfill(self) -> int:
        """Chain every stored event without a hash (a store from before chains existed); how many."""
        record, head = None, GENESIS
        rows: list[list[Any]] = []
        count = 0
        for row in self.stored_events():  # in (record, version) order: one chain at a time
            if row["record"] != record:
                record, head = row["record"], GENESIS
            if row["c_hash"] is None:
                head = event_hash(head, row["record"], row["originator_version"], row["topic"], bytes(row["state"]))
                rows.append([row["notification_id"], record, row["originator_version"], head])
                count += 1
            else:
                head = row["c_hash"]
            if len(rows) >= PAGE:
                self._insert_chain(rows)
                rows = []
        self._insert_chain(rows)
        return count

    def _insert_chain(self, rows: list[list[Any]]) -> None:
        if rows:
            self.db.execute_many(
                f"INSERT INTO {self.chain} (notification_id, record_id, version, hash) VALUES (?, ?, ?, ?)", rows
            )


@dataclass
class _Chain:
    """Where verification is in one record's chain."""

    record: str | None = None
    version: int = 0
    previous: str = GENESIS


UNREADABLE_ID = "(not a record id"  # how a stored id an edit made unreadable is named


def _record_of(value: Any) -> str:
    """A stored originator id as a record id; an edit that made it something else is kept visible."""
    try:
        return str(UUID(value.hex() if isinstance(value, (bytes, memoryview)) else str(value)))
    except (ValueError, TypeError, AttributeError):
        return f"{UNREADABLE_ID}: {type(value).__name__})"


def _unreadable(row: dict[str, Any]) -> str | None:
    """What makes a stored event's row impossible to hash as written by the service, if anything."""
    if row["record"].startswith(UNREADABLE_ID):
        return "its record id is not an id"
    if not isinstance(row["originator_version"], int) or isinstance(row["originator_version"], bool):
        return f"its version is a {type(row['originator_version']).__name__}, not a whole number"
    if not isinstance(row["topic"], str):
        return f"its topic is a {type(row['topic']).__name__}, not text"
    if not isinstance(row["state"], (bytes, bytearray, memoryview)):
        return f"its stored bytes were replaced by a {type(row['state']).__name__}"
    if row["c_hash"] is not None and not isinstance(row["c_hash"], str):
        return f"its hash is a {type(row['c_hash']).__name__}, not a hash"
    return None


def _versions(first: int, last: int) -> str:
    return f"version {first}" if first == last else f"versions {first} to {last}"


def _chunks(records: Sequence[str] | None, size: int = 500) -> Iterator[list[str] | None]:
    if records is None:
        yield None
        return
    items = list(records)
    for start in range(0, len(items), size):
        yield items[start : start + size]
