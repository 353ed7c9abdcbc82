"""Personal data for the readers: customer keys and touchpoint details, opened with data keys.

The view holds personal data only sealed; this opens what the API must show, and
shows 'erased' where the data key was destroyed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from journeys.crypto import UnreadableError
from journeys.customer import key_context, open_personal
from journeys.storage.keyring import Keyring
from projections.storage.view import JourneyView


class PersonalData:
    def __init__(self, view: JourneyView, keyring: Keyring):
        self.view = view
        self.keyring = keyring

    def customer_keys(self, rows: Iterable[dict[str, Any]]) -> dict[str, str]:
        """The customer key of each view row (by record id); erased records are left out."""
        rows = list(rows)
        keys = self.keyring.data_keys(UUID(r["record_id"]) for r in rows if r.get("sealed_key"))
        found: dict[str, str] = {}
        for row in rows:
            record_id = UUID(row["record_id"])
            key = keys.get(record_id)
            if key is None or not row.get("sealed_key"):
                continue
            try:
                found[row["record_id"]] = key.open(row["sealed_key"], key_context(record_id))
            except UnreadableError:
                continue
        return found

    def touchpoints(self, record_id: str) -> list[dict[str, Any]]:
        """The record's touchpoints in occurred order, personal fields opened (or 'erased')."""
        rid = UUID(record_id)
        key = self.keyring.data_keys([rid]).get(rid)
        return [
            {**row, **open_personal(row["sealed"], rid, row["touchpoint_id"], key)}
            for row in self.view.touchpoints_of(record_id)
        ]
