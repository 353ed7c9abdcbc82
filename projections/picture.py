"""A customer's whole picture, read for a page of customers at once: the accounts, deals and
cases they are in (with the customer's buying role there and each instance's stages), their
consent and the messages they were sent; and the recommendation `journeys.recommend` makes of it.

Live answers read the view; replay (`as_of`, `known_at`) derives the same picture from the
touchpoints as they were, with the same pure functions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from journeys.crypto import ERASED
from journeys.customer import open_personal
from journeys.playbook import Scope
from journeys.recommend import Membership, Picture, Recommendation, consent_of, recommend
from journeys.stages import Stages, derive
from projections.stages import StoredTouchpoint
from projections.storage.schema import SUBJECT_COLUMN

if TYPE_CHECKING:
    from projections.system import System

MESSAGE_SENT = "message_sent"


@dataclass(frozen=True)
class Whole:
    picture: Picture
    recommendation: Recommendation


def wholes(system: System, stages: dict[str, Stages]) -> dict[str, Whole]:
    """The picture and recommendation of each customer (by record id: the root of linked records)."""
    customers = list(stages)
    if not customers:
        return {}
    playbook = system.playbook
    scopes: list[Scope] = [s for s in playbook.scopes if s is not Scope.customer]
    rows = _rows(system, customers, scopes, {*playbook.consent.types, MESSAGE_SENT})
    memberships = _memberships(system, rows, scopes)
    sent = _sent(system, rows)
    out = {}
    for customer in customers:
        mine = rows.get(customer, [])
        picture = Picture(
            stages=stages[customer],
            memberships=tuple(memberships.get(customer, ())),
            consent=consent_of((StoredTouchpoint(r) for r in mine if r["type"] in playbook.consent.types), playbook),
            sent=frozenset(sent.get(customer, ())),
        )
        out[customer] = Whole(picture, recommend(playbook, picture))
    return out


def whole(system: System, record_id: str, stages: Stages) -> Whole:
    return wholes(system, {record_id: stages})[record_id]


def replayed(
    system: System, touchpoints: Sequence[Any], stages: Stages, as_of: datetime | None, known_at: datetime | None
) -> Whole:
    """The picture as it was: the replayed touchpoints (their personal data open), and each
    account, deal and case they name derived from its touchpoints up to `as_of`, known by `known_at`."""
    playbook = system.playbook
    roles: dict[tuple[Scope, str], str | None] = {}
    for t in touchpoints:  # occurred order: the latest role wins
        if as_of is not None and t.occurred_at > as_of:
            continue
        for scope in playbook.scopes:
            key = getattr(t, scope.key, None) if scope is not Scope.customer else None
            if key is not None:
                roles[(scope, key)] = t.buying_role or roles.get((scope, key))
    members = []
    for (scope, key), role in roles.items():
        found = [
            StoredTouchpoint(r) for r in system.view.touchpoints_where(SUBJECT_COLUMN[scope], key)
            if known_at is None or r["recorded_at"] <= known_at
        ]
        members.append(Membership(scope, key, derive(found, playbook, as_of, scope).stages, role))
    current = [t for t in touchpoints if as_of is None or t.occurred_at <= as_of]
    sent = {
        str(t.properties["message_id"]) for t in current
        if t.type == MESSAGE_SENT and isinstance(t.properties, dict) and t.properties.get("message_id") is not None
    }
    picture = Picture(stages, tuple(members), consent_of(current, playbook), frozenset(sent))
    return Whole(picture, recommend(playbook, picture))


def _rows(system: System, customers: list[str], scopes: list[Scope], types: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Per customer, the touchpoints that name an instance or are consent or a message sent."""
    view = system.view
    named = " OR ".join(f"{scope.key} IS NOT NULL" for scope in scopes) or "1 = 0"
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for start in range(0, len(customers), 500):
        chunk = customers[start : start + 500]
        rows = view.query(
            f"SELECT customer, record_id, touchpoint_id, type, channel, campaign, occurred_at, deal_id, account_id, "
            f"case_id, buying_role, CASE WHEN type = ? THEN sealed END AS sealed FROM {view.table('touchpoints')} "
            f"WHERE customer IN ({', '.join('?' * len(chunk))}) "
            f"AND ({named} OR type IN ({', '.join('?' * len(types))}))",
            [MESSAGE_SENT, *chunk, *sorted(types)],
        )
        for row in rows:
            found[row["customer"]].append(dict(row))
    for rows in found.values():
        rows.sort(key=lambda r: (r["occurred_at"], r["touchpoint_id"]))
    return found


def _memberships(system: System, rows: dict[str, list[dict[str, Any]]], scopes: list[Scope]) -> dict[str, list[Membership]]:
    roles: dict[str, dict[tuple[Scope, str], str | None]] = {}
    for customer, mine in rows.items():
        named: dict[tuple[Scope, str], str | None] = {}
        for row in mine:  # occurred order: the latest role wins
            for scope in scopes:
                if row[scope.key] is not None:
                    named[(scope, row[scope.key])] = row["buying_role"] or named.get((scope, row[scope.key]))
        roles[customer] = named
    states = {
        scope: system.view.load_states(scope, sorted({k for named in roles.values() for s, k in named if s is scope}))
        for scope in scopes
    }
    return {
        customer: [
            Membership(scope, key, states[scope][key][0], role)
            for (scope, key), role in named.items() if key in states[scope]
        ]
        for customer, named in roles.items()
    }


def _sent(system: System, rows: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """The message ids of each customer's message_sent touchpoints (in sealed properties)."""
    sent_rows = [(c, r) for c, mine in rows.items() for r in mine if r["type"] == MESSAGE_SENT]
    keys = system.keyring.data_keys({UUID(r["record_id"]) for _, r in sent_rows})
    found: dict[str, set[str]] = defaultdict(set)
    for customer, row in sent_rows:
        rid = UUID(row["record_id"])
        properties = open_personal(row["sealed"], rid, row["touchpoint_id"], keys.get(rid))["properties"]
        if properties != ERASED and isinstance(properties, dict) and properties.get("message_id") is not None:
            found[customer].add(str(properties["message_id"]))
    return found
