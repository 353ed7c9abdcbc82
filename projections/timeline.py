"""An instance's timeline for marketers: its touchpoints and its stage transitions per journey,
the swim lanes of the dashboard. No personal data: type, channel, campaign and times only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from journeys.playbook import Scope
from projections.storage.schema import SUBJECT_COLUMN

if TYPE_CHECKING:
    from projections.system import System


def timeline(system: System, scope: Scope, subject: str, limit: int) -> dict[str, Any]:
    """The latest `limit` touchpoints and the transitions from the first of them on."""
    view = system.view
    touchpoints = view.touchpoints_where(SUBJECT_COLUMN[scope], subject)
    shown = touchpoints[-limit:]
    since = shown[0]["occurred_at"] if shown else None
    transitions = view.transitions_of(subject, since=since, scope=scope)
    return {
        "scope": scope.value,
        "journeys": system.playbook.journeys_of(scope),
        "touchpoint_count": len(touchpoints),
        "touchpoints": [
            {k: t[k] for k in ("touchpoint_id", "type", "channel", "campaign", "occurred_at", "source")} for t in shown
        ],
        "transitions": [
            {k: t[k] for k in ("journey", "from_stage", "to_stage", "skipped", "restart", "at", "touchpoint_id")}
            for t in transitions
        ],
    }
