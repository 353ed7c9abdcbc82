"""Publishes every stage transition to Kafka as a CloudEvent, keyed by the customer's record id.

The projection writes each new transition to an outbox in the same transaction
as the stages it derives from the event log; this publisher follows the outbox
from its own tracked position, which it records only after Kafka acknowledged
the messages. A crash in between publishes a transition again (at least once),
with the same CloudEvent id, so subscribers can drop the repeat.

An erasure is published as a `com.journeys.customer.erased` CloudEvent followed by
a tombstone (the record id as key, no value), so downstream tools forget the
customer and a compacted topic drops every earlier message about it. Transitions
of a record erased before they were published are not published.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.persistence import Tracking
from kafka import KafkaProducer

from journeys.playbook import Scope
from journeys.recommend import Recommendation
from journeys.retry import logged, until_stopped
from journeys.storage.tables import ts
from projections.partition import Part, instance_part
from projections.picture import wholes
from projections.system import System

log = logging.getLogger(__name__)

TRACKING_NAME = "stage_changes_publisher"
EVENT_TYPE = "com.journeys.stage.changed"
ERASED_TYPE = "com.journeys.customer.erased"
ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:journeys:stage-change")


def change_id(change: dict[str, Any]) -> str:
    """Stable id: the customer, the touchpoint that caused it, the journey, from and to."""
    parts = [_key_of(change), change["touchpoint_id"], change["journey"],
             change["from_stage"] or "", change["to_stage"] or ""]
    return str(uuid5(ID_NAMESPACE, "\x1f".join(parts)))


def _key_of(change: dict[str, Any]) -> str:
    """The message key: the record id for customers, 'scope:id' for accounts, deals and cases."""
    return change["subject"] if change["scope"] == Scope.customer.value else f"{change['scope']}:{change['subject']}"


def erased_cloudevent(change: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid5(ID_NAMESPACE, f"erased\x1f{change['subject']}")),
        "source": "journeys/erasure",
        "type": ERASED_TYPE,
        "subject": change["subject"],
        "time": ts(change["at"]),
        "datacontenttype": "application/json",
        "data": {"record_id": change["subject"], "erased_at": ts(change["at"])},
    }


def cloudevent(change: dict[str, Any], customer_key: str | None, chosen: Recommendation | None) -> dict[str, Any]:
    """The CloudEvent of a stage change; a customer's carries the recommendation (journeys/recommend.py)
    as it stands when published, and why, so messaging tools act on it."""
    message = chosen.message if chosen else None
    customer = change["scope"] == Scope.customer.value
    return {
        "specversion": "1.0",
        "id": change_id(change),
        "source": "journeys/stage-projection",
        "type": EVENT_TYPE,
        "subject": _key_of(change),
        "time": ts(change["at"]),
        "datacontenttype": "application/json",
        "data": {
            "scope": change["scope"],
            "subject": change["subject"],  # the record id of a customer, else the account, deal or case id
            "customer_id": customer_key,
            "record_id": change["subject"] if customer else None,
            "journey": change["journey"],
            "from_stage": change["from_stage"],
            "to_stage": change["to_stage"],
            "skipped": change["skipped"],
            "restart": change["restart"],
            "at": ts(change["at"]),
            "cause": {"touchpoint_id": change["touchpoint_id"], "type": change["touchpoint_type"]},
            "defects": change["defects"],
            "awareness_stage": change["awareness_stage"],
            "next_message": message.model_dump() if message else None,
            "recommendation": None if chosen is None else {
                "message_id": message.id if message else None,
                "rule": chosen.rule,
                "kind": chosen.kind.value if chosen.kind else None,
                "channel": chosen.channel,
                "matched": list(chosen.matched),
                "suppressed": list(chosen.suppressed),
                "held_back": list(chosen.held_back),
                "reason": chosen.reason,
            },
        },
    }


class StageChangePublisher:
    """Follows the outbox and publishes it; as part K of N (`journeys publish-stage-changes
    --partition K/N`), only the changes of the instances that fall to it (projections/partition.py:
    instance_part), with its own position: each instance's changes go out from one part, in order."""

    def __init__(self, system: System, producer: KafkaProducer, topic: str, batch_size: int = 1000,
                 part: Part = Part(1, 1)):
        self.system = system
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self.part = part
        self.tracking_name = part.tracking_name(TRACKING_NAME)
        self.published = 0
        self.stopping = threading.Event()

    @property
    def position(self) -> int:
        return self.system.view.max_tracking_id(self.tracking_name) or 0

    def publish_once(self) -> int:
        """Publish the next batch of the outbox (this part's changes in it); returns how many
        rows of the outbox that passed."""
        read = self.system.view.stage_changes_after(self.position, self.batch_size)
        if not read:
            return 0
        part = self.part
        changes = read if part.alone else [
            c for c in read if instance_part(c["scope"], c["subject"], part.count) == part.index]
        records = {c["subject"] for c in changes if c["scope"] == Scope.customer.value}
        rows = [row for r in records if (row := self.system.view.customer(r)) is not None]
        keys = self.system.personal.customer_keys(rows)  # erased records have none
        found = wholes(self.system, {r["record_id"]: r["stages"] for r in rows if r["record_id"] in keys})
        futures = []
        headers = [("content-type", b"application/cloudevents+json")]
        for change in changes:
            key = _key_of(change).encode()
            if change["kind"] == "erased":
                value = json.dumps(erased_cloudevent(change)).encode()
                futures.append(self.producer.send(self.topic, key=key, value=value, headers=headers))
                futures.append(self.producer.send(self.topic, key=key, value=None))  # tombstone
                continue
            record = change["subject"]
            if change["scope"] != Scope.customer.value:
                value = json.dumps(cloudevent(change, None, None)).encode()
                futures.append(self.producer.send(self.topic, key=key, value=value, headers=headers))
                continue
            if record not in keys:
                continue  # erased before it was published: nothing to say about it
            value = json.dumps(cloudevent(change, keys[record], found[record].recommendation)).encode()
            futures.append(self.producer.send(self.topic, key=key, value=value, headers=headers))
        self.producer.flush()
        for future in futures:
            future.get(30)  # raises if Kafka did not take it: the position does not move
        self.system.view.insert_tracking(Tracking(self.tracking_name, read[-1]["seq"]))
        self.published += len(changes)
        return len(read)

    def run(self, poll_interval: float = 0.2) -> None:
        report = logged(log, "publishing stage changes")
        try:
            while not self.stopping.is_set():
                for attempt in until_stopped(Exception, self.stopping, poll_interval, 10.0, report):
                    with attempt:  # any error: a change is never skipped (the position moves after Kafka took it)
                        published = self.publish_once()
                if not published:
                    self.stopping.wait(poll_interval)
        except Exception:
            pass  # told to stop while it failed: the position did not move
        finally:
            self.producer.close()

    def stop(self) -> None:
        self.stopping.set()
