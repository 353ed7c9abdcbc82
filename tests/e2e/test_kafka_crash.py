"""A consumer process killed with SIGKILL mid-stream, restarted or taken over by the other
member of its group, loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter

from consumers.touchpoints import source_name
from journeys.customer import Customer
from projections.system import System
from tests.factories import payload, rid
from tests.kafka_helpers import produce
from tests.waiting import wait_until

TOPIC = f"{Customer.TouchpointRecorded.__module__}:{Customer.TouchpointRecorded.__qualname__}"
TYPES = ["email_opened", "inquiry_received", "meeting_held", "demo_delivered", "deal_lost", "contract_signed"]


def stored(system: System) -> Counter:
    """How often each (customer, touchpoint id) is stored, read from the whole event log."""
    counts: Counter = Counter()
    start = 1
    while True:
        page = system.app.recorder.select_notifications(start=start, limit=5000, topics=[TOPIC])
        for n in page:
            event = system.app.mapper.to_domain_event(n)
            counts[(str(event.originator_id), event.touchpoint_id)] += 1
        if len(page) < 5000:
            return counts
        start = page[-1].id + 1


def stream(prefix: str, count: int, customers: int, retried_every: int) -> tuple[dict, list]:
    """`count` touchpoints over `customers` customers as Kafka messages keyed by customer, every
    `retried_every`-th sent again (publishers retry), and the (customer, touchpoint id) pairs expected once."""
    expected, messages = {}, []
    for n in range(count):
        body = payload(f"{prefix}{n:05d}", TYPES[n % len(TYPES)], n / 100, customer=f"c{n % customers:03d}")
        expected[(body["customer_id"], body["touchpoint_id"])] = 1
        messages.append((body["customer_id"].encode(), body, None))
    return expected, messages + messages[::retried_every]


def consumer_process(settings) -> subprocess.Popen:
    env = {
        **os.environ,
        "JOURNEYS_DATABASE_URL": settings.database_url,
        "JOURNEYS_KEY_FILE": settings.key_file,
        "JOURNEYS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "JOURNEYS_KAFKA_TOPIC": settings.kafka_topic,
        "JOURNEYS_KAFKA_DEAD_LETTER_TOPIC": settings.kafka_dead_letter_topic,
        "JOURNEYS_KAFKA_GROUP_ID": settings.kafka_group_id,
        "JOURNEYS_KAFKA_MAX_POLL_RECORDS": "150",
        "JOURNEYS_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "JOURNEYS_KAFKA_MAX_POLL_INTERVAL_MS": "10000",
        "JOURNEYS_RUN_PROJECTIONS": "true",
    }
    return subprocess.Popen([sys.executable, "-m", "api.cli", "consume"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Member:
    """A `journeys consume` process whose output lines are collected as they come."""

    def __init__(self, settings):
        self.process = consumer_process(settings)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))

    def assigned(self, topic: str) -> list[int]:
        """The partitions of `topic` its latest assignment gave it."""
        latest = [line for line in self.lines if "assigned partitions:" in line]
        if not latest:
            return []
        named = latest[-1].split("assigned partitions:", 1)[1].split(",")
        return sorted(int(n.strip().rsplit(":", 1)[1]) for n in named if n.strip().startswith(f"{topic}:"))

    def output(self) -> str:
        self.reader.join(timeout=10)
        return "".join(self.lines)


def test_two_members_of_one_group_one_killed_store_everything_once(system: System, kafka_settings):
    """Two consumers share the topic's three partitions; one is killed with SIGKILL once it has
    stored some of its own; the group gives its partitions to the other, which starts each at the
    position the event store recorded (not at Kafka's committed offset), so nothing is lost or
    stored twice."""
    topic = kafka_settings.kafka_topic
    expected, messages = stream("g", 4000, customers=200, retried_every=8)

    doomed, survivor = Member(kafka_settings), Member(kafka_settings)
    try:
        wait_until(lambda: doomed.assigned(topic) and survivor.assigned(topic)
                   and sorted(doomed.assigned(topic) + survivor.assigned(topic)) == [0, 1, 2],
                   timeout=60, what="both members to share the three partitions")
        theirs = doomed.assigned(topic)
        produce(kafka_settings.kafka_bootstrap_servers, topic, messages)
        wait_until(lambda: all(system.app.source_position(source_name(topic, p)) is not None for p in theirs)
                   and len(stored(system)) >= 800, timeout=90, what="the doomed member to store from its partitions")
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
        assert doomed.process.returncode == -signal.SIGKILL, doomed.output()  # it was still running
        assert len(stored(system)) < len(expected), "the kill should land mid-stream"

        wait_until(lambda: len(stored(system)) == len(expected), timeout=180,
                   what="the survivor to take the dead member's partitions and store the whole stream")
        assert survivor.assigned(topic) == [0, 1, 2], survivor.output()
    finally:
        for member in (doomed, survivor):
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
                member.process.wait(timeout=30)
    assert survivor.process.returncode == 0, survivor.output()
    assert stored(system) == Counter({(rid(system, c), t): n for (c, t), n in expected.items()})


def test_sigkill_mid_stream_then_restart(system: System, kafka_settings):
    expected, messages = stream("t", 3000, customers=150, retried_every=10)
    produce(kafka_settings.kafka_bootstrap_servers, kafka_settings.kafka_topic, messages)

    first = consumer_process(kafka_settings)
    try:
        wait_until(lambda: len(stored(system)) >= 600 or first.poll() is not None, timeout=90,
                   what="part of the stream to be stored")
    finally:
        first.send_signal(signal.SIGKILL)
        output = first.communicate(timeout=10)[0].decode()
    assert first.returncode == -signal.SIGKILL, output  # it was still running
    partial = stored(system)
    assert 600 <= len(partial) < len(expected), "the kill should land mid-stream"

    second = consumer_process(kafka_settings)
    try:
        wait_until(lambda: len(stored(system)) == len(expected), timeout=180, what="the whole stream")
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=30)[0].decode()
    assert second.returncode == 0, output

    assert stored(system) == Counter({(rid(system, c), t): n for (c, t), n in expected.items()})  # every touchpoint exactly once, none lost
    system.runner.catch_up()
    customers = sorted({c for c, _ in expected})
    live = {c: (system.view.customer(rid(system, c)), system.view.transitions_of(rid(system, c))) for c in customers}
    system.runner.rebuild()
    assert {c: (system.view.customer(rid(system, c)), system.view.transitions_of(rid(system, c))) for c in customers} == live
