"""Check an export (journeys export) with no database: the standard library and journeys/chain.py only.

An export is JSON Lines: one line per stored event, in chain order per record (its
bytes in base64, or only its hash where the selection left it out), then a manifest.
Every line's hash is recomputed (from its bytes, or from the hash of its bytes where
it was left out) and linked to the one before; each chain's hash at
the checkpoint is proved under the checkpoint's Merkle root; the checkpoint's seal
and its link to the ones before are recomputed; and, given the root an auditor kept
outside the database, the checkpoint must be that one.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journeys.chain import GENESIS, Checkpoint, broken_checkpoint_link, content_hash, leaf, link, root_of_proof

EXPORT_FORMAT = "journeys-export/1"


@dataclass
class ExportCheck:
    events: int = 0
    sealed: int = 0  # events at or before the checkpoint, proved under its root
    unsealed: int = 0  # events after it: chained, but not yet under a root
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _last_line(path: Path) -> str:
    last = ""
    with path.open("rb") as file:
        for raw in file:
            if raw.strip():
                last = raw.decode("utf-8", errors="replace")
    return last


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        item = json.loads(_last_line(path))
    except ValueError:
        return None
    manifest = item.get("manifest") if isinstance(item, dict) else None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == EXPORT_FORMAT else None


def verify_export(path: str | Path, root: str | None = None) -> ExportCheck:
    """Everything an export claims, checked; the first problem names its line."""
    path = Path(path)
    check = ExportCheck()
    manifest = _manifest(path)
    if manifest is None:
        check.problems.append(f"{path}: the last line is not a {EXPORT_FORMAT} manifest")
        return check
    sealed_heads: dict[str, Any] = manifest.get("sealed_heads") or {}
    chains: dict[str, tuple[int, str]] = {}  # record -> (version, hash) recomputed up to its last line so far
    stated: dict[str, str] = {}  # record -> the hash its last line states: the next line links to it
    at_seal: dict[str, str] = {}  # record -> its chain's hash at the sealed version
    first: dict[str, int] = {}  # record -> the line of its first problem
    more: dict[str, int] = {}  # record -> how many more problems it has after that
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            problem = _check_line(number, raw, chains, stated, at_seal, sealed_heads, check)
            if problem == "manifest":
                break
            if problem:
                record = problem[1] or ""
                if record in first:
                    more[record] = more.get(record, 0) + 1
                else:
                    first[record] = number
                    check.problems.append(f"line {number}: {problem[0]}")
    for record, count in more.items():
        check.problems.append(f"record {record or '(unreadable lines)'}: {count} more problems after line {first[record]}")
    _check_manifest(manifest, chains, at_seal, root, check)
    return check


Problem = tuple[str, str | None]  # what is wrong with a line, and its record if it has one


def _check_line(
    number: int, raw: bytes, chains: dict[str, tuple[int, str]], stated_by: dict[str, str],
    at_seal: dict[str, str], sealed_heads: dict[str, Any], check: ExportCheck,
) -> Problem | str | None:
    try:
        item = json.loads(raw)
        if "manifest" in item:
            return "manifest"
        record, version, stated = str(item["record"]), int(item["version"]), str(item["hash"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return "not an event line of an export", None
    check.events += 1
    if item.get("line") != number:
        return f"holds export line {str(item.get('line'))[:20]}: lines were removed, added or reordered", record
    last_version, recomputed = chains.get(record, (0, GENESIS))
    previous = stated_by.get(record, GENESIS)  # linked to the hash the line before states: one edit is named once
    problem = None
    if version != last_version + 1:
        problem = f"record {record} version {version} follows version {last_version}: a line is missing"
    try:
        if item.get("elided"):  # left out of this export: the hash of its bytes stands in for them
            content = str(item["content"])
        else:
            content = content_hash(str(item["topic"]), base64.b64decode(item["state"], validate=True))
    except (KeyError, binascii.Error, ValueError, TypeError):
        stated_by[record] = stated
        return problem or f"record {record} version {version}: neither its bytes (base64) nor their hash", record
    if link(previous, record, version, content) != stated and problem is None:
        problem = f"record {record} version {version}: does not match the chain: edited"
    digest = link(recomputed, record, version, content)  # the chain as the bytes give it: for the seal
    chains[record] = (version, digest)
    stated_by[record] = stated
    seal = sealed_heads.get(record)
    if seal is not None and version <= int(seal.get("version", 0)):
        check.sealed += 1
        if version == int(seal["version"]):
            at_seal[record] = digest
    else:
        check.unsealed += 1
    return (problem, record) if problem else None


def _check_manifest(
    manifest: dict[str, Any], chains: dict[str, tuple[int, str]], at_seal: dict[str, str],
    root: str | None, check: ExportCheck,
) -> None:
    for record, head in (manifest.get("heads") or {}).items():
        found = chains.get(record)
        if found is None or found != (int(head["version"]), head["hash"]):
            check.problems.append(
                f"manifest: record {record}'s chain does not end at version {head['version']} with its hash: "
                "lines are missing or changed"
            )
    try:
        checkpoints = [Checkpoint(**c) for c in manifest.get("checkpoints") or []]
        checkpoint = Checkpoint(**manifest["checkpoint"]) if manifest.get("checkpoint") else None
    except TypeError:
        check.problems.append("manifest: a checkpoint is malformed")
        return
    if checkpoint is None:
        check.notes.append("no checkpoint was sealed when this export was made: its chains prove order, not age")
        if root is not None:
            check.problems.append(f"manifest: no checkpoint, so nothing is sealed under the root {root}")
        return
    broken = broken_checkpoint_link(checkpoints)
    if broken or not checkpoints or checkpoints[-1] != checkpoint:
        check.problems.append(f"manifest: {broken or 'the checkpoint is not the last of its chain'}")
    for record, seal in (manifest.get("sealed_heads") or {}).items():
        digest = at_seal.get(record)
        proved = digest is not None and root_of_proof(leaf(record, int(seal["version"]), digest), seal["proof"])
        if proved != checkpoint.merkle:
            check.problems.append(
                f"manifest: record {record} at version {seal['version']} is not under checkpoint "
                f"{checkpoint.seq}'s root: its lines up to there were changed"
            )
    if root is None:
        check.notes.append(
            f"no --root given: the export is consistent with checkpoint {checkpoint.seq} ({checkpoint.root}), "
            "but only a root kept outside the database proves it was not rewritten"
        )
    elif root != checkpoint.root:
        held = next((c for c in checkpoints if c.root == root), None)
        check.problems.append(
            f"the export is sealed by checkpoint {checkpoint.seq} ({checkpoint.root}), not by the root you hold"
            + (f" (checkpoint {held.seq}): export again with --checkpoint {held.seq}" if held else "")
        )
