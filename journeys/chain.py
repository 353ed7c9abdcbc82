"""Tamper evidence: hash chains over stored events, and checkpoints sealing their heads.

Pure functions, no database: the event store, `journeys verify` and the offline
`journeys verify-export` all compute with these, so they cannot disagree.

- Each stored event's hash covers its stored bytes (record id, version, topic,
  state: the state holds personal data only sealed, and an erasure destroys the
  key, not the bytes, so the chain verifies after an erasure) and the hash of the
  record's previous event. Editing, deleting, inserting or reordering an event of a
  record breaks the link after it.
- A checkpoint seals the head of every chain at a log position into a Merkle root,
  and chains to the checkpoint before it. A root kept outside the database then
  proves that nothing at or before its position changed since, even by someone
  able to recompute every hash in the database; a Merkle proof shows that one
  record's head is under the root without the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GENESIS = "0" * 64  # the "previous hash" of a record's first event, and of the first checkpoint


def _sha(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def content_hash(topic: str, state: bytes) -> str:
    """The hash of an event's stored bytes alone: an export gives it in place of bytes it leaves out."""
    return _sha(b"content\n", topic.encode(), b"\n", state)


def link(previous: str, record_id: str, version: int, content: str) -> str:
    """The hash of a stored event (its content hash), chained to its record's previous event."""
    return _sha(b"event\n", f"{previous}\n{record_id}\n{version}\n{content}".encode())


def event_hash(previous: str, record_id: str, version: int, topic: str, state: bytes) -> str:
    return link(previous, record_id, version, content_hash(topic, state))


def leaf(record_id: str, version: int, head: str) -> str:
    """A record's chain head as a Merkle leaf."""
    return _sha(b"head\n", f"{record_id}\n{version}\n{head}".encode())


def _parent(left: str, right: str) -> str:
    return _sha(b"node\n", left.encode(), b"\n", right.encode())


def _next_level(level: list[str]) -> list[str]:
    """Pairs hashed into parents; an odd node is carried up unchanged."""
    return [_parent(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]


def merkle_root(leaves: Sequence[str]) -> str:
    """The root over leaves in the given order."""
    if not leaves:
        return _sha(b"empty")
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proofs(leaves: Sequence[str], wanted: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    """For each wanted leaf index, its path to the root: (sibling hash, 'L' or 'R' for the sibling's side)."""
    paths: dict[int, list[tuple[str, str]]] = {i: [] for i in wanted}
    positions = {i: i for i in paths}
    level = list(leaves)
    while len(level) > 1:
        for i, at in positions.items():
            sibling = at ^ 1
            if sibling < len(level):
                paths[i].append((level[sibling], "L" if sibling < at else "R"))
            positions[i] = at // 2
        level = _next_level(level)
    return paths


def root_of_proof(leaf_hash: str, proof: Sequence[Sequence[str]]) -> str:
    node = leaf_hash
    for sibling, side in proof:
        node = _parent(sibling, node) if side == "L" else _parent(node, sibling)
    return node


@dataclass(frozen=True)
class Checkpoint:
    """The heads of all chains at a log position, sealed and chained to the checkpoint before."""

    seq: int
    position: int
    heads: int
    merkle: str
    previous: str
    root: str
    created_at: str

    @staticmethod
    def seal(seq: int, position: int, heads: int, merkle: str, previous: str) -> str:
        return _sha(b"checkpoint\n", f"{previous}\n{seq}\n{position}\n{heads}\n{merkle}".encode())

    def is_sealed(self) -> bool:
        return self.root == self.seal(self.seq, self.position, self.heads, self.merkle, self.previous)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def broken_checkpoint_link(checkpoints: Sequence[Checkpoint]) -> str | None:
    """The first checkpoint (in sequence order) whose root or link to the one before is wrong."""
    previous = GENESIS
    for checkpoint in checkpoints:
        if not checkpoint.is_sealed():
            return f"checkpoint {checkpoint.seq}: its root does not match its contents (edited)"
        if checkpoint.previous != previous:
            return f"checkpoint {checkpoint.seq}: does not follow checkpoint {checkpoint.seq - 1} (removed or replaced)"
        previous = checkpoint.root
    return None
