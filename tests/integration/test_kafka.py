"""Kafka ingestion against a real Kafka-protocol broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random

from kafka import KafkaProducer

from consumers.stage_changes import StageChangePublisher, change_id, erased_cloudevent
from consumers.touchpoints import TouchpointConsumer
from journeys.touchpoint import Touchpoint
from projections.partition import Part
from projections.system import System
from tests.factories import B2B_DEAL, b2b_deal, payload, rid
from tests.kafka_helpers import Running, produce, read_all
from tests.waiting import wait_until


def stored_ids(system: System, customer: str) -> list[str]:
    return [t.touchpoint_id for t in system.app.replay(customer).touchpoints]


def consumed(consumer: TouchpointConsumer, n: int):
    return lambda: sum(consumer.counts.values()) >= n


def test_plain_and_cloudevents_messages_are_recorded(system: System, kafka_settings):
    plain = payload("p1", "email_opened", 0)
    structured = {"specversion": "1.0", "id": "s1", "source": "crm", "type": "com.example.touchpoint",
                  "time": "2026-03-03T09:00:00Z", "data": {"customer_id": "acme", "type": "demo_delivered", "channel": "meeting"}}
    binary_headers = [("ce_specversion", b"1.0"), ("ce_id", b"b1"), ("ce_source", b"app"),
                      ("ce_type", b"com.example.touchpoint"), ("ce_time", b"2026-03-04T09:00:00Z")]
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, [
        (b"acme", plain, None),
        (b"acme", structured, [("content-type", b"application/cloudevents+json")]),
        (b"acme", {"type": "trial_started", "channel": "product"}, binary_headers),
    ])
    with Running(TouchpointConsumer(system, kafka_settings)) as consumer:
        wait_until(consumed(consumer, 3), what="three messages")
    assert consumer.counts["recorded"] == 3
    assert sorted(stored_ids(system, "acme")) == ["b1", "p1", "s1"]
    system.runner.catch_up()
    assert system.view.customer(rid(system, "acme"))["stages"].positions


def test_duplicates_and_redelivery_apply_once(system: System, kafka_settings):
    deal = b2b_deal("globex")
    messages = [(b"globex", p, None) for p in deal] + [(b"globex", deal[3], None), (b"globex", deal[7], None)]
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, messages)
    with Running(TouchpointConsumer(system, kafka_settings)) as consumer:
        wait_until(consumed(consumer, len(messages)), what="the deal")
    assert consumer.counts["recorded"] == len(deal) and consumer.counts["duplicate"] == 2

    # The offset commits are lost (a new group starts from the beginning): on assignment
    # the consumer seeks to the positions the event store recorded, so only the new
    # message is applied.
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic,
            [(b"globex", payload("late", "support_ticket_opened", 90, "globex"), None)])
    again = kafka_settings.model_copy(update={"kafka_group_id": kafka_settings.kafka_group_id + "-b"})
    with Running(TouchpointConsumer(system, again)) as replayed:
        wait_until(consumed(replayed, 1), what="the new message")
    assert replayed.counts == {"recorded": 1}
    assert sorted(stored_ids(system, "globex")) == sorted([i for i, _, _ in B2B_DEAL] + ["late"])


def test_a_redelivered_batch_is_recognised_and_not_applied_twice(system: System, kafka_settings):
    """A crash after the write but before the offset commit delivers the batch again."""
    from kafka import KafkaConsumer, TopicPartition

    deal = b2b_deal("globex")
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, [(b"globex", p, None) for p in deal])
    reader = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, enable_auto_commit=False,
                           auto_offset_reset="earliest")
    partitions = [TopicPartition(kafka_settings.kafka_topic, p) for p in range(3)]
    reader.assign(partitions)
    batch: dict = {}
    wait_until(lambda: _fill(reader, batch, len(deal)), what="the deal")
    reader.close()
    consumer = TouchpointConsumer(system, kafka_settings)
    try:
        for partition, messages in batch["by_partition"].items():
            consumer.process(partition, messages)
        assert consumer.counts["recorded"] == len(deal)
        for partition, messages in batch["by_partition"].items():  # the same batch again
            consumer.process(partition, messages)
        assert consumer.counts["redelivered"] == len(deal)
    finally:
        consumer.consumer.close()
        consumer.dead_letters.producer.close()
    assert sorted(stored_ids(system, "globex")) == sorted(i for i, _, _ in B2B_DEAL)


def _fill(reader, batch: dict, expected: int) -> bool:
    for partition, messages in reader.poll(timeout_ms=500).items():
        batch.setdefault("by_partition", {}).setdefault(partition, []).extend(messages)
    return sum(len(v) for v in batch.get("by_partition", {}).values()) >= expected


def test_poison_messages_go_to_the_dead_letter_topic_and_the_stream_goes_on(system: System, kafka_settings):
    good = payload("g1", "email_opened", 0)
    conflicting = {**good, "channel": "email"}
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, [
        (b"acme", b"{not json", [("trace", b"abc")]),
        (b"acme", {**payload("bad", "email_opened", 0), "occurred_at": "yesterday"}, None),
        (b"acme", good, None),
        (b"acme", conflicting, None),
        (b"acme", payload("g2", "demo_delivered", 1), None),
    ])
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    kinds = ("not_json", "invalid", "conflict")
    letters_before = {k: sample("journeys_dead_letters_total", reason=k) for k in kinds}
    recorded_before = sample("journeys_touchpoints_received_total", outcome="recorded", intake="kafka")
    with Running(TouchpointConsumer(system, kafka_settings)) as consumer:
        wait_until(consumed(consumer, 4), what="the stream")
        wait_until(lambda: sum(sample("journeys_kafka_consumer_lag", topic=kafka_settings.kafka_topic,
                                      partition=str(p)) for p in range(3)) == 0, what="the lag to reach 0")
    assert consumer.counts["recorded"] == 2 and consumer.counts["dead_lettered"] == 2
    # The metrics say the same: dead letters by reason, touchpoints by outcome from the kafka intake.
    assert {k: sample("journeys_dead_letters_total", reason=k) - letters_before[k] for k in kinds} == dict.fromkeys(kinds, 1)
    assert sample("journeys_touchpoints_received_total", outcome="recorded", intake="kafka") - recorded_before == 2
    lags = [REGISTRY.get_sample_value("journeys_kafka_consumer_lag", {"topic": kafka_settings.kafka_topic, "partition": str(p)})
            for p in range(3)]
    assert 0.0 in lags and all(lag in (0.0, None) for lag in lags)  # measured where messages were, all caught up
    assert sorted(stored_ids(system, "acme")) == ["g1", "g2"]
    letters = read_all(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_dead_letter_topic, 3)
    assert len(letters) == 3
    by_kind = {dict(m.headers)["dlq.error_kind"].decode(): m for m in letters}
    assert set(by_kind) == {"not_json", "invalid", "conflict"}
    not_json = by_kind["not_json"]
    headers = dict(not_json.headers)
    assert not_json.key == b"acme" and not_json.value == b"{not json"
    assert headers["trace"] == b"abc"  # the original headers are kept
    assert headers["dlq.topic"].decode() == kafka_settings.kafka_topic
    assert {"dlq.partition", "dlq.offset", "dlq.dead_lettered_at", "dlq.reason"} <= set(headers)
    assert b"occurred_at" in dict(by_kind["invalid"].headers)["dlq.reason"]
    assert json.loads(by_kind["conflict"].value)["channel"] == "email"


def test_stage_changes_are_published_once_per_transition(system: System, kafka_settings):
    system.record([Touchpoint(**p) for p in b2b_deal("globex")])
    system.runner.catch_up()
    transitions = system.view.transitions_of(rid(system, "globex"))
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, acks="all")
    publisher = StageChangePublisher(system, producer, kafka_settings.kafka_stage_changes_topic)
    assert publisher.publish_once() == len(transitions)
    assert publisher.publish_once() == 0  # its position is tracked: nothing twice
    producer.close()
    events = read_all(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_stage_changes_topic, len(transitions))
    assert len(events) == len(transitions)
    bodies = [json.loads(m.value) for m in events]
    assert len({b["id"] for b in bodies}) == len(bodies)
    record = rid(system, "globex").encode()  # keyed by our record id: a tombstone can follow on erasure
    assert all(m.key == record and dict(m.headers)["content-type"] == b"application/cloudevents+json" for m in events)
    assert {b["data"]["customer_id"] for b in bodies} == {"globex"}
    signed = next(b for b in bodies if b["data"]["journey"] == "buyer" and b["data"]["to_stage"] == "Purchase")
    assert signed["data"]["cause"] == {"touchpoint_id": "d15", "type": "contract_signed"}
    assert signed["data"]["next_message"]["id"] == "purchase-onboarding"
    chosen = signed["data"]["recommendation"]  # and why, so messaging tools can act on it
    assert (chosen["message_id"], chosen["rule"], chosen["kind"]) == ("purchase-onboarding", "onboarding", "service")
    assert chosen["matched"] == ["relationship: Onboarding"] and "rule 'onboarding'" in chosen["reason"]
    assert signed["id"] == change_id({**signed["data"], "touchpoint_id": "d15"})


def test_publisher_parts_send_each_change_once_from_one_part_in_the_order_derived(system: System, kafka_settings):
    """Three parts (`journeys publish-stage-changes --partition K/3`) taking turns in random batches:
    every change of the outbox goes out exactly once, each instance's from one part only and in
    the order it was derived; an erased customer's changes do not, its erasure and tombstone do."""
    from tests.integration.test_partitions import contacts_in_every_part

    rng = random.Random(11)
    customers = contacts_in_every_part(system, 3, per_part=2)  # record ids are random: every part gets some
    system.record([Touchpoint(**{**p, "touchpoint_id": f"{c}-{p['touchpoint_id']}", "deal_id": f"D-{n % 3}"})
                   for n, c in enumerate(customers) for p in b2b_deal(c)])
    erased = rid(system, customers[4])
    system.erase(customers[4], "test")
    system.runner.catch_up()
    outbox = system.view.stage_changes_after(0, 10_000)
    expected: dict[bytes, list[str | None]] = {}
    for change in outbox:
        key = (change["subject"] if change["scope"] == "customer" else f"{change['scope']}:{change['subject']}").encode()
        if change["kind"] == "erased":
            expected.setdefault(key, []).extend([erased_cloudevent(change)["id"], None])  # and its tombstone
        elif change["subject"] != erased:
            expected.setdefault(key, []).append(change_id(change))
    assert any(k.startswith(b"deal:") for k in expected) and len(expected) > 6
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, acks="all")
    parts = [StageChangePublisher(system, producer, kafka_settings.kafka_stage_changes_topic, batch_size=rng.randint(3, 40),
                                  part=Part(k, 3)) for k in (1, 2, 3)]
    while any(p.position < outbox[-1]["seq"] for p in parts):
        rng.choice(parts).publish_once()
    producer.close()
    assert sum(p.published for p in parts) == len(outbox) and all(p.published for p in parts)
    total = sum(len(ids) for ids in expected.values())
    messages = read_all(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_stage_changes_topic, total)
    sent: dict[bytes, list[str | None]] = {}
    for m in messages:  # one key, one Kafka partition: in the order sent
        sent.setdefault(m.key, []).append(json.loads(m.value)["id"] if m.value is not None else None)
    assert sent == expected


def test_an_erasure_publishes_a_tombstone_and_nothing_personal_after_it(system: System, kafka_settings):
    system.record([Touchpoint(**p) for p in b2b_deal("jane@example.com")])
    system.runner.catch_up()
    record = rid(system, "jane@example.com")
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, acks="all")
    publisher = StageChangePublisher(system, producer, kafka_settings.kafka_stage_changes_topic)
    published = publisher.publish_once()
    system.record([Touchpoint(**payload("late", "lead_captured", 0.5, "jane@example.com"))])  # adds transitions
    system.erase("jane@example.com", "test")
    system.runner.catch_up()
    publisher.publish_once()
    producer.close()
    events = read_all(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_stage_changes_topic, published + 2)
    assert len(events) == published + 2  # the late transitions were erased before publication: not sent
    tail = [m for m in events if m.value is None or b"customer.erased" in m.value]
    assert len(tail) == 2
    erased, tombstone = tail  # one key, so one partition: in this order
    assert erased.key == tombstone.key == record.encode()
    body = json.loads(erased.value)
    assert body["type"] == "com.journeys.customer.erased" and body["data"]["record_id"] == record
    assert tombstone.value is None
    assert b"jane" not in erased.value


def test_a_late_touchpoint_publishes_only_the_transitions_it_adds(system: System, kafka_settings):
    system.record([Touchpoint(**payload("t2", "demo_delivered", 5))])
    system.runner.catch_up()
    before = len(system.view.stage_changes_after(0, 100))
    system.record([Touchpoint(**payload("t1", "lead_captured", 1))])  # occurred earlier, arrives later
    system.runner.catch_up()
    added = system.view.stage_changes_after(0, 100)[before:]
    assert {(c["journey"], c["from_stage"], c["to_stage"]) for c in added} == {
        ("seller", None, "Prospecting"), ("seller", "Prospecting", "Presenting"),
        ("awareness", "Unaware", "Aware"), ("awareness", "Aware", "Evaluating"),
        ("lead_funnel", None, "Identify"),  # the default playbook's lead funnel moves too
    }


def test_a_failed_write_commits_no_offset_and_is_retried(system: System, kafka_settings, monkeypatch):
    from eventsourcing.persistence import OperationalError
    from kafka import KafkaConsumer, TopicPartition

    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic,
            [(b"acme", payload(f"t{n}", "email_opened", n), None) for n in range(5)])
    reader = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap_servers, auto_offset_reset="earliest")
    reader.assign([TopicPartition(kafka_settings.kafka_topic, p) for p in range(3)])
    batch: dict = {}
    wait_until(lambda: _fill(reader, batch, 5), what="the messages")
    reader.close()

    consumer = TouchpointConsumer(system, kafka_settings)
    events: list[str] = []
    real_record = system.record

    def flaky_record(*args, **kwargs):
        if not events:
            events.append("write failed")
            raise OperationalError("database went away")
        events.append("write")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(system, "record", flaky_record)
    monkeypatch.setattr(consumer.consumer, "commit", lambda offsets: events.append(f"commit {sorted(o.offset for o in offsets.values())}"))
    try:
        consumer._until_done(batch["by_partition"])
    finally:
        consumer.consumer.close()
        consumer.dead_letters.producer.close()
    assert events == ["write failed", "write", "commit [5]"]
    assert sorted(stored_ids(system, "acme")) == [f"t{n}" for n in range(5)]


def test_numbers_json_cannot_hold_or_we_cannot_store_are_dead_lettered(system: System, kafka_settings):
    """An integer of 5,000 digits stopped Python's JSON reader with a ValueError; NaN and 1e400
    would have been stored as null. Each is a dead letter with its reason; the stream goes on."""
    huge = b'{"touchpoint_id": "h1", "customer_id": "acme", "n": ' + b"9" * 5000 + b"}"
    nan = json.dumps({**payload("n1", "email_opened", 0), "properties": {"score": float("nan")}}).encode()
    inf = json.dumps(payload("i1", "email_opened", 0))[:-1].encode() + b', "properties": {"score": 1e400}}'
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, [
        (b"acme", huge, None), (b"acme", nan, None), (b"acme", inf, None),
        (b"acme", payload("g1", "email_opened", 0), None),
    ])
    with Running(TouchpointConsumer(system, kafka_settings)) as consumer:
        wait_until(consumed(consumer, 4), what="the stream")
    assert consumer.counts["recorded"] == 1 and consumer.counts["dead_lettered"] == 3
    assert stored_ids(system, "acme") == ["g1"]
    letters = read_all(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_dead_letter_topic, 3)
    reasons = sorted(dict(m.headers)["dlq.reason"].decode() for m in letters)
    assert any("digits" in r for r in reasons), reasons
    assert sum("properties.score is not a finite number" in r for r in reasons) == 2, reasons
