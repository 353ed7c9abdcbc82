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
from journeys.storage.chain_store import PAGE, UNREADABLE_ID, ChainStore, chunks
from journeys.verify_export import EXPORT_FORMAT

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


class AuditTrail(ChainStore):
    """Verification and export of the chains and checkpoints of one store."""

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
        for chunk in chunks(records):
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

@dataclass
class _Chain:
    """Where verification is in one record's chain."""

    record: str | None = None
    version: int = 0
    previous: str = GENESIS


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


