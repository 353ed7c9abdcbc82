"""What the projection hands the view to store: one batch's changes to instances, links and revisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from journeys.playbook import Scope
from journeys.stages import Stages, Transition


class GenerationChanged(Exception):
    """The live generation of the read models changed under a writer: follow it and try again."""


class NotCaughtUp(Exception):
    """A rebuilt generation is behind the live one: catch it up to this position first."""


@dataclass(frozen=True)
class Revision:
    """A change to what an instance's past looked like: stages before and after, transitions
    removed and added, and why (a late touchpoint, or a new playbook)."""

    kind: str
    reason: str
    recorded_at: datetime
    cause_touchpoint_id: str | None
    cause_record_id: str | None
    before: dict[str, str | None]
    after: dict[str, str | None]
    removed: list[dict[str, Any]]
    added: list[dict[str, Any]]


@dataclass(frozen=True)
class SubjectChange:
    """What one batch did to one instance: its new stages and its stage history."""

    scope: Scope
    subject: str
    stages: Stages
    touchpoint_count: int
    transitions: list[Transition]  # with the record (contact) whose touchpoint caused each
    causes: dict[str, str | None]  # touchpoint id -> record id, for the transitions (None: not a contact's)
    replace_from: datetime | None  # re-derived from this occurred time on; None: only appended
    new_transitions: list[Transition]  # not in the history before: to be published
    changed: tuple[str, ...]  # the journeys whose position (or criteria, defects) differ from the stored
    revision: Revision | None = None  # what re-deriving the past changed in it
    before: Stages | None = None  # its stages before the batch (None: a new instance)
    read_count: int = 0  # its touchpoint count when the batch read it (checked when parts project)
    replace_until: datetime | None = None  # re-derived up to this occurred time (None: to the end)
    # The transitions stored in the span replaced, as read (None: not read, the span is deleted
    # whole): only those the derivation changed are deleted, only its new ones inserted.
    replaced: list[dict[str, Any]] | None = None


@dataclass
class IdentityChange:
    """What a link or an unlink does to the view (see StageProjection)."""

    linked: tuple[str, str, str] | None = None  # (record, linked to, root) to insert
    unlinked: str | None = None  # the record whose link goes
    roots: dict[str, str] = field(default_factory=dict)  # record -> its new root, for the records that move
    removed: list[tuple[str, Stages]] = field(default_factory=list)  # customer subjects that are no more
