"""Projection parts: N processes each following the event log and applying only its records.

Part K of N applies the events of the records whose id falls to it (a stable function of the
record's UUID), and records its own position (`<tracking name>#K/N`). Together the N parts
give the view one runner gives, because:

- the derivation does not depend on the order touchpoints arrive in (the property tests), so
  it does not matter which part applies a deal's touchpoints first;
- an instance several parts write (a deal over contacts, a customer with linked records) is
  written from the state its writer read: in the write's transaction the instance is locked
  (PostgreSQL: an advisory lock; SQLite: the database's write lock) and its touchpoint count
  must still be the one the derivation started from, or the batch is read again
  (InstanceChanged). Between two identity links only touchpoints change an instance, and each
  adds to its count, so the count tells whether it changed;
- an identity link moves touchpoints between customers, so it is a barrier: every part stops
  before it, the part owning the link's record applies it once all the others have reached it,
  and the others go on once it has.

A part's position is its own, or the single runner's if that is further (a rebuild writes a new
generation's position under the single name, and the parts go on from there). Parts and a
single runner never write the same generation at once: each refuses while the other layout is
ahead (ProjectionRunner.layout_conflict).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from uuid import UUID

LINK_TOPICS = ("IdentityLinked", "IdentityUnlinked")
_PART = re.compile(r"^(\d+)/(\d+)$")


class InstanceChanged(Exception):
    """Another part changed an instance since this batch read it: read the batch again."""


@dataclass(frozen=True)
class Part:
    index: int  # K, from 1
    count: int  # N

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"part {self.index}/{self.count}: K must be between 1 and N")

    @classmethod
    def parse(cls, text: str) -> Part:
        """'K/N' (1 <= K <= N), as `journeys project --partition` takes it."""
        found = _PART.match(text.strip())
        if not found:
            raise ValueError(f"{text!r} is not a part: write K/N, e.g. 2/4")
        return cls(int(found[1]), int(found[2]))

    @property
    def alone(self) -> bool:
        return self.count == 1

    def owns(self, record_id: UUID | str) -> bool:
        return self.alone or part_of(record_id, self.count) == self.index

    def tracking_name(self, name: str) -> str:
        """Where this part records its position, given the generation's tracking name."""
        return name if self.alone else f"{name}#{self.index}/{self.count}"

    def siblings(self) -> list[Part]:
        return [Part(k, self.count) for k in range(1, self.count + 1) if k != self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def part_of(record_id: UUID | str, count: int) -> int:
    """The part (1..count) a record's events go to: its UUID's number, modulo count."""
    number = record_id.int if isinstance(record_id, UUID) else UUID(str(record_id)).int
    return number % count + 1


def is_link(topic: str) -> bool:
    return topic.endswith(LINK_TOPICS)


def instance_part(scope: str, subject: str, count: int) -> int:
    """The part (1..count) an instance's stage changes are published by: a customer's is its
    record's (part_of), any other's a stable hash of it. One part publishes all of an instance's,
    in the order they were derived."""
    return part_of(subject, count) if scope == "customer" else lock_key(scope, subject) % count + 1


def lock_key(scope: str, subject: str) -> int:
    """A signed 64-bit number for an instance, for PostgreSQL's advisory locks."""
    digest = hashlib.blake2b(f"{scope}\x00{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
